// The model picker (projects.forms.ModelPicker), enhanced: a filter box above the
// <select data-model-picker> hides the models whose label or value does not contain what
// is typed (and the provider groups left empty), and the "Other model" text field shows
// only while "Other model" is picked. Without this file the plain select and the text
// field work as they are. A static file: the Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  const OTHER = "other";

  function otherField(select) {
    const field = select.form && select.form.querySelector("[data-model-other]");
    if (!field) return null;
    // The field's own row: its <div> in form.as_div, its wrapper on the project page.
    return field.closest(".model-other") || field.parentElement;
  }

  function showOther(select) {
    const row = otherField(select);
    if (row) row.hidden = select.value !== OTHER;
  }

  function filter(select, query) {
    const words = query.toLowerCase().split(/\s+/).filter(Boolean);
    let firstVisible = null;
    for (const option of select.options) {
      if (option.value === OTHER) continue;  // always there
      const text = (option.textContent + " " + option.value).toLowerCase();
      option.hidden = !words.every(function (word) { return text.includes(word); });
      if (!option.hidden && firstVisible === null) firstVisible = option;
    }
    for (const group of select.querySelectorAll("optgroup")) {
      group.hidden = !Array.from(group.children).some(function (option) { return !option.hidden; });
    }
    const selected = select.selectedOptions[0];
    if (firstVisible && (!selected || selected.hidden)) {
      select.value = firstVisible.value;
      showOther(select);
    }
    return firstVisible !== null;
  }

  function enhance(select) {
    const box = document.createElement("input");
    box.type = "search";
    box.placeholder = "Filter models…";
    box.setAttribute("aria-label", "Filter models");
    box.setAttribute("aria-controls", select.id);
    box.dataset.modelFilter = "";
    box.autocomplete = "off";
    const note = document.createElement("small");
    note.setAttribute("aria-live", "polite");
    box.addEventListener("input", function () {
      note.textContent = filter(select, box.value) ? "" : "No model matches: pick “Other model” to type one.";
    });
    // Enter in the filter box does not submit the form.
    box.addEventListener("keydown", function (event) {
      if (event.key === "Enter") event.preventDefault();
    });
    select.addEventListener("change", function () { showOther(select); });
    select.before(box);
    box.after(note);
    showOther(select);
  }

  function init() {
    document.querySelectorAll("select[data-model-picker]").forEach(enhance);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
