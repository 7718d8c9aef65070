// The artifact page's "Quantize to INT8" form: each method's own settings (accuracy control's
// limit, quantization-aware training's schedule) are shown, and sent, only while that method is
// chosen; without this script every field shows and the server ignores the ones that do not apply.
// Unlabelled datasets can only be chosen for plain post-training quantization (the server refuses
// the other methods on them too).
(function () {
  const form = document.querySelector("[data-testid=quantize-form]");
  if (!form) return;

  function chosen() {
    const radio = form.querySelector("[name=method]:checked");
    return radio ? radio.value : "ptq";
  }

  // <fieldset data-show-for="accuracy">: hidden and disabled (so not submitted) for other methods.
  function showApplicable() {
    const method = chosen();
    for (const box of form.querySelectorAll("[data-show-for]")) {
      const applies = box.dataset.showFor.split(" ").includes(method);
      box.hidden = !applies;
      box.disabled = !applies;
    }
    for (const option of form.querySelectorAll("option[data-unlabelled]")) {
      option.disabled = method !== "ptq";
      if (option.disabled && option.selected) form.elements.dataset.value = "";
    }
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "method") showApplicable();
  });
  showApplicable();
})();
