// Model upload page: check what was chosen (one file, or an IR's .xml + .bin), send each file
// with the shared uploader (uploader.js: tus, resumable, SHA-256 as it goes), one after the
// other with a progress bar each, then submit the form with one `uploads` id per file.
(function () {
  const form = document.querySelector("[data-testid=model-upload-form]");
  const $ = (id) => form.querySelector(`[data-testid=${id}]`);
  const { bytes, duration } = window.Vintner;
  const fileInput = form.querySelector("input[type=file]");
  const nameInput = form.elements.name;
  const formatSelect = form.elements.format;
  const stateDict = $("state-dict-fields");
  const pause = $("upload-pause");
  const fileList = $("file-list");
  const rowTemplate = document.getElementById("file-row");

  const SINGLE = /\.(pt|pt2|pth|safetensors|onnx|zip)$/i;
  const WEIGHTS_ONLY = /\.(pth|safetensors)$/i; // almost always a state_dict

  let current = null; // the upload in progress (Vintner.upload's handle)
  const finished = new Map(); // File -> {id, sha256}: a retry does not send a finished file again
  let autoName = "";
  const ui = window.Vintner.uploadForm(form, { retry: () => finished.size });

  const files = () => [...fileInput.files];
  const kept = () => [...form.querySelectorAll("input[data-kept]")];

  // --- A previous form round trip kept its finished uploads: they can be sent again as they are
  const keptNames = kept().filter((input) => input.name === "upload_names").map((input) => input.value);
  if (kept().some((input) => input.name === "uploads")) {
    $("kept-upload").querySelector("b").textContent = keptNames.join(" and ") || "the files";
    $("kept-upload").hidden = false;
    fileInput.required = false;
  }

  // What is wrong with the choice, in words; "" when it can be uploaded.
  function problem(chosen) {
    if (chosen.length === 1) {
      if (SINGLE.test(chosen[0].name)) return "";
      if (/\.(xml|bin)$/i.test(chosen[0].name)) return "An OpenVINO IR is two files: choose its .xml and its .bin together.";
      return `“${chosen[0].name}” is not a model file this page takes: see the list below the file field.`;
    }
    if (chosen.length === 2) {
      const kinds = chosen.map((file) => (file.name.match(/\.(xml|bin)$/i) || [, ""])[1].toLowerCase()).sort();
      if (kinds[0] === "bin" && kinds[1] === "xml") return "";
    }
    return "Choose one model file, or the .xml and .bin of one OpenVINO IR.";
  }

  function toggleStateDict() {
    const format = formatSelect.value;
    const show = format === "state_dict" || (format === "" && files().some((file) => WEIGHTS_ONLY.test(file.name)));
    stateDict.hidden = !show;
    stateDict.disabled = !show; // hidden fields are not sent (and not required)
  }

  function chosen() {
    const chosen = files();
    if (chosen.length) kept().forEach((input) => input.remove());
    $("kept-upload").hidden = true;
    fileInput.required = true;
    ui.hideError();
    toggleStateDict();
    if (!chosen.length) return;
    const wrong = problem(chosen);
    if (wrong) ui.showError(wrong);
    // Name the model after the file (an IR after its .xml) unless the user typed a name.
    const main = chosen.find((file) => /\.xml$/i.test(file.name)) || chosen[0];
    if (!nameInput.value || nameInput.value === autoName) {
      autoName = main.name.replace(/\.(pt2|pt|pth|safetensors|onnx|zip|xml|bin)$/i, "").slice(0, 100);
      nameInput.value = autoName;
    }
  }
  fileInput.addEventListener("change", chosen);
  formatSelect.addEventListener("change", toggleStateDict);
  if (fileInput.files.length) chosen(); // chosen before this script had loaded
  else toggleStateDict(); // a round trip may have kept format "state_dict"

  // --- Showing where things stand ----------------------------------------------------------
  function rowFor(file) {
    const row = rowTemplate.content.firstElementChild.cloneNode(true);
    row.dataset.name = file.name;
    row.querySelector(".file-name").textContent = file.name;
    row.querySelector("progress").setAttribute("aria-label", `Upload progress of ${file.name}`);
    return row;
  }

  function showFile(row, sent, total) {
    row.querySelector("progress").value = total ? sent / total : 1;
    row.querySelector("[data-field=percent]").textContent = `${Math.floor((total ? sent / total : 1) * 100)}%`;
    row.querySelector("[data-field=bytes]").textContent = `${bytes(sent)} of ${bytes(total)}`;
  }

  function showSpeed(rate, secondsLeft) {
    $("upload-speed").textContent = rate ? `${(rate / 1e6).toFixed(1)} MB/s` : "";
    $("upload-eta").textContent = rate ? `· ${duration(secondsLeft)} left` : "";
  }

  function showPhase(text) {
    $("upload-phase").textContent = text;
  }

  pause.addEventListener("click", () => {
    if (!current) return;
    if (current.paused) current.resume();
    else { current.pause(); showSpeed(null); }
    pause.textContent = current.paused ? "Resume" : "Pause";
    showPhase(current.paused ? "paused" : "");
  });

  // One file: resolves with {id, sha256}; the bar of its row follows it.
  async function send(file, row, bytesAfter, last) {
    if (finished.has(file)) {
      showFile(row, file.size, file.size);
      if (last) pause.hidden = true;
      return finished.get(file);
    }
    current = window.Vintner.upload(file, {
      project: form.dataset.project,
      csrf: form.elements.csrfmiddlewaretoken.value,
      endpoint: form.dataset.endpoint,
      onProgress({ sent, total, rate }) {
        showFile(row, sent, total);
        showSpeed(rate, rate && (total - sent + bytesAfter) / rate); // time left for all the files
      },
      onResume({ offset, total }) {
        const note = $("upload-resume");
        note.textContent = `Resuming “${file.name}”: ${bytes(offset)} of ${bytes(total)} already uploaded.`;
        note.hidden = false;
      },
      onUploaded() { showSpeed(null); if (last) pause.hidden = true; },
      onVerify({ done, total }) { showPhase(`Verifying “${file.name}”… ${total ? Math.floor((done / total) * 100) : 100}%`); },
    });
    const result = await current.done;
    current = null;
    showPhase("");
    finished.set(file, result);
    return result;
  }

  function hidden(name, value) {
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    input.dataset.sent = "";
    return input;
  }

  form.addEventListener("submit", async (event) => {
    const chosen = files();
    if (!chosen.length && kept().length) return; // the kept uploads go as they are
    event.preventDefault();
    if (ui.busy || !chosen.length) return;
    const wrong = problem(chosen);
    if (wrong) { ui.showError(wrong); return; }
    ui.hideError();
    $("upload-resume").hidden = true;
    $("upload-status").hidden = false;
    fileList.replaceChildren(...chosen.map(rowFor));
    const rows = [...fileList.children];
    chosen.forEach((file, i) => showFile(rows[i], finished.has(file) ? file.size : 0, file.size));
    showSpeed(null);
    showPhase("");
    pause.textContent = "Pause";
    ui.setBusy(true);
    try {
      const results = [];
      for (const [i, file] of chosen.entries()) {
        const after = chosen.slice(i + 1).reduce((sum, next) => sum + next.size, 0);
        results.push(await send(file, rows[i], after, i === chosen.length - 1));
      }
      form.querySelectorAll("input[data-sent]").forEach((input) => input.remove());
      results.forEach(({ id, sha256 }, i) => {
        form.append(hidden("uploads", id), hidden("sha256", sha256), hidden("upload_names", chosen[i].name));
      });
      showPhase("Starting the inspection…");
      toggleStateDict();
      ui.send();
    } catch (error) {
      current = null;
      showPhase("");
      ui.fail(error);
    }
  });
})();
