// doce's page behaviour, as a static file: the Content-Security-Policy allows scripts from
// doce's own origin only, with no inline script, no inline event handler (onsubmit=,
// hx-on) and no eval (htmx's trigger filters). Each piece is driven by a data- attribute.
(function () {
  "use strict";

  // <form data-confirm="Question?">: ask before submitting.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  // <form data-reset-on-success hx-post=...>: empty the form once htmx's request succeeded.
  document.addEventListener("htmx:afterRequest", function (event) {
    const form = event.detail.elt;
    if (form instanceof HTMLFormElement && "resetOnSuccess" in form.dataset && event.detail.successful) {
      form.reset();
    }
  });

  // [data-poll-unless-live]: htmx polls it only while the live stream (doce/live.js) is not
  // open (window.doceLive), so a live page is not re-rendered every second.
  document.addEventListener("htmx:beforeRequest", function (event) {
    const elt = event.detail.elt;
    if (window.doceLive && elt instanceof Element && elt.hasAttribute("data-poll-unless-live")) {
      event.preventDefault();
    }
  });

  // The providers page's dialog (providers/_dialog.html): htmx loads a fragment into it,
  // then it opens with its first field focused.
  document.addEventListener("htmx:afterSwap", function (event) {
    const dialog = document.getElementById("provider-dialog");
    if (dialog && dialog.contains(event.detail.target) && !dialog.open) {
      dialog.showModal();
      const field = dialog.querySelector("input:not([type=hidden]), select, textarea");
      if (field) field.focus();
    }
  });

  // A prompt's field that applies only for some value of another field (data-when-field,
  // data-when-op, data-when-value; providers.forms): its row shows while that value is
  // chosen. Without this script the server shows it after a submit.
  document.addEventListener("change", function (event) {
    const form = event.target.form;
    if (!(form instanceof HTMLFormElement)) return;
    form.querySelectorAll("[data-when-field]").forEach(function (field) {
      const other = form.elements.namedItem(field.dataset.whenField);
      if (!other) return;
      const same = other.value === field.dataset.whenValue;
      const applies = field.dataset.whenOp === "neq" ? !same : same;
      const row = field.closest("div");
      if (row) row.classList.toggle("prompt-inactive", !applies);
    });
  });
})();
