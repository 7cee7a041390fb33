// The live transcript of a project page: server-sent events from the project's stream
// (projects/stream.py). Three events:
//   delta  {"message", "part", "start", "text"}: text OpenCode streamed into a part;
//          appended as text (never HTML) from the part's length in code points, so a
//          part the server has just rendered is not written twice;
//   status "busy" | "idle";
//   reload the transcript changed otherwise: fetch the server's rendering (htmx).
// Without EventSource (or JavaScript) nothing here runs: the server-rendered transcript
// stays, and htmx polls it while the agent works (doce/app.js holds that polling back while
// window.doceLive; this reload's source is the stream's section, so it is never held).
(function () {
  "use strict";
  const root = document.querySelector("[data-live-stream]");
  if (!root || !window.EventSource || !window.htmx) return;
  const transcriptUrl = root.dataset.liveTranscript;
  let reloading = false;
  let reloadAgain = false;
  let held = []; // deltas that arrived while a reload was on its way

  const transcript = () => document.getElementById("transcript");

  function newEntry(box, messageId) {
    const entry = document.createElement("div");
    entry.className = "entry role-assistant";
    entry.dataset.role = "assistant";
    entry.dataset.done = "false";
    entry.dataset.message = messageId;
    const who = document.createElement("div");
    who.className = "who";
    who.textContent = "Agent";
    const text = document.createElement("div");
    text.className = "text";
    entry.append(who, text);
    box.insertBefore(entry, box.querySelector(":scope > p.muted"));
    return entry;
  }

  function partFor(messageId, partId) {
    const box = transcript();
    if (!box) return null;
    const found = box.querySelector('[data-part="' + CSS.escape(partId) + '"]');
    if (found) return found;
    const entry =
      box.querySelector('[data-message="' + CSS.escape(messageId) + '"]') ||
      newEntry(box, messageId);
    const text = entry.querySelector(".text");
    const part = document.createElement("span");
    part.className = "part";
    part.dataset.part = partId;
    part.dataset.length = "0";
    text.insertBefore(part, text.querySelector(".pending"));
    return part;
  }

  function write(part, text) {
    text.split("\n").forEach(function (line, index) {
      if (index) part.appendChild(document.createElement("br"));
      if (line) part.appendChild(document.createTextNode(line));
    });
  }

  function applyDelta(delta) {
    if (reloading) {
      held.push(delta);
      return;
    }
    const part = partFor(delta.message, delta.part);
    if (!part) return;
    const have = Number(part.dataset.length) || 0;
    const chars = Array.from(delta.text);
    if (delta.start > have) {
      reload(); // a piece is missing: the server's rendering has it
      return;
    }
    const fresh = chars.slice(have - delta.start);
    if (!fresh.length) return;
    write(part, fresh.join(""));
    part.dataset.length = String(delta.start + chars.length);
  }

  function reload() {
    if (reloading) {
      reloadAgain = true;
      return;
    }
    reloading = true;
    htmx
      .ajax("GET", transcriptUrl, { source: root, target: "#transcript", swap: "outerHTML" })
      .finally(function () {
        reloading = false;
        const pending = held;
        held = [];
        pending.forEach(applyDelta);
        if (reloadAgain) {
          reloadAgain = false;
          reload();
        }
      });
  }

  const source = new EventSource(root.dataset.liveStream);
  source.addEventListener("open", function () {
    window.doceLive = true;
    root.dataset.live = "open"; // what tests wait for (a selector: no eval under the CSP)
  });
  source.addEventListener("error", function () {
    // Reconnecting (EventSource does that itself), or given up (a 204 from a server
    // that cannot stream): either way, htmx's polling covers the gap.
    window.doceLive = false;
    root.dataset.live = "closed";
  });
  source.addEventListener("delta", function (event) {
    applyDelta(JSON.parse(event.data));
  });
  source.addEventListener("status", function (event) {
    const box = transcript();
    if (box) box.dataset.busy = event.data === "busy" ? "true" : "false";
  });
  source.addEventListener("reload", reload);
  // The agent's files changed: reload the preview (its iframe; or, while there was
  // nothing to show, the card, which shows the iframe once index.html exists).
  source.addEventListener("files", function () {
    const frame = document.querySelector("iframe[data-preview-url]");
    if (frame) {
      frame.src = frame.dataset.previewUrl;
      return;
    }
    const card = document.querySelector("[data-preview-card]");
    if (card) {
      htmx.ajax("GET", card.dataset.previewCard, { source: card, target: card, swap: "outerHTML" });
    }
  });
})();
