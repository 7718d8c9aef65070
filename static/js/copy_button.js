// Copy buttons: <button data-copy="id"> copies the text of the element with that id, and says so.
// The clipboard API needs a secure context (https or localhost); elsewhere the text is selected and
// copied the old way, or left selected for Ctrl+C.
(function () {
  function selectText(element) {
    const range = document.createRange();
    range.selectNodeContents(element);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  async function copy(element) {
    const text = element.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        return true;
      } catch (error) { /* fall back below */ }
    }
    selectText(element);
    try {
      return document.execCommand("copy");
    } catch (error) {
      return false;
    }
  }

  document.querySelectorAll("button[data-copy]").forEach((button) => {
    const label = button.textContent;
    button.addEventListener("click", async () => {
      const target = document.getElementById(button.dataset.copy);
      if (!target) return;
      const copied = await copy(target);
      button.textContent = copied ? "Copied" : "Selected: press Ctrl+C";
      button.dataset.state = copied ? "copied" : "selected";
      setTimeout(() => { button.textContent = label; delete button.dataset.state; }, 2500);
    });
  });
})();
