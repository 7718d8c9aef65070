// Dataset upload page: send the archive with the shared uploader (tus, resumable, hashed with
// SHA-256 as it goes: uploader.js), then submit the form with just the upload's id and the hash,
// so the server can tell that what arrived is what was chosen.
(function () {
  const form = document.querySelector("[data-testid=upload-form]");
  const $ = (id) => form.querySelector(`[data-testid=${id}]`);
  const { bytes, duration } = window.Vintner;
  const fileInput = form.querySelector("input[type=file]");
  const nameInput = form.elements.name;
  const pause = $("upload-pause");

  let upload = null; // the upload in progress (Vintner.upload's handle)
  let uploaded = false;
  let verifying = null; // {done, total} of the hash, once the bytes are all sent
  let autoName = "";
  const ui = window.Vintner.uploadForm(form, { retry: () => uploaded || fileInput.files.length });

  // --- A previous form round trip kept its finished upload: it can be sent again as is ------
  if (form.elements.upload.value) {
    const kept = $("kept-upload");
    kept.querySelector("b").textContent = form.elements.archive_name.value || "the archive";
    kept.hidden = false;
    fileInput.required = false;
  }

  function chosen() {
    const file = fileInput.files[0];
    form.elements.upload.value = form.elements.sha256.value = form.elements.archive_name.value = "";
    $("kept-upload").hidden = true;
    fileInput.required = true;
    ui.hideError();
    if (!file) return;
    // Name the dataset after the file unless the user typed a name of their own.
    if (!nameInput.value || nameInput.value === autoName) {
      autoName = file.name.replace(/\.(tar\.gz|tgz|tar|zip|csv|tsv|jsonl|json)$/i, "").slice(0, 100);
      nameInput.value = autoName;
    }
  }
  fileInput.addEventListener("change", chosen);
  if (fileInput.files.length) chosen(); // chosen before this script had loaded

  // --- Showing where things stand ----------------------------------------------------------
  function showProgress({ sent, total, rate, eta }) {
    $("upload-progress").value = total ? sent / total : 0;
    $("upload-percent").textContent = `${Math.floor((total ? sent / total : 0) * 100)}%`;
    $("upload-bytes").textContent = `${bytes(sent)} of ${bytes(total)}`;
    $("upload-speed").textContent = rate ? `· ${(rate / 1e6).toFixed(1)} MB/s` : "";
    $("upload-eta").textContent = rate ? `· ${duration(eta)} left` : "";
  }

  function showPhase() {
    let text = "";
    if (upload && upload.paused) text = "· paused";
    else if (uploaded && verifying) {
      const share = verifying.total ? Math.floor((verifying.done / verifying.total) * 100) : 100;
      text = `· Verifying… ${share}%`;
    }
    $("upload-phase").textContent = text;
  }

  pause.addEventListener("click", () => {
    if (!upload) return;
    if (upload.paused) upload.resume();
    else {
      upload.pause();
      $("upload-speed").textContent = $("upload-eta").textContent = "";
    }
    pause.textContent = upload.paused ? "Resume" : "Pause";
    showPhase();
  });

  form.addEventListener("submit", async (event) => {
    const file = fileInput.files[0];
    if (!file && form.elements.upload.value) return; // the kept upload goes as it is
    event.preventDefault();
    if (ui.busy || !file) return;
    ui.hideError();
    uploaded = false;
    verifying = null;
    $("upload-resume").hidden = true;
    $("upload-status").hidden = false;
    showProgress({ sent: 0, total: file.size });
    pause.textContent = "Pause";
    upload = window.Vintner.upload(file, {
      project: form.dataset.project,
      csrf: form.elements.csrfmiddlewaretoken.value,
      endpoint: form.dataset.endpoint,
      onProgress: showProgress,
      onResume({ offset, total }) {
        const note = $("upload-resume");
        note.textContent = `Resuming: ${bytes(offset)} of ${bytes(total)} already uploaded.`;
        note.hidden = false;
      },
      onUploaded() { uploaded = true; pause.hidden = true; },
      onVerify(state) { verifying = state; showPhase(); },
    });
    ui.setBusy(true);
    showPhase();
    try {
      const { id, sha256 } = await upload.done;
      form.elements.upload.value = id;
      form.elements.sha256.value = sha256;
      form.elements.archive_name.value = file.name;
      $("upload-phase").textContent = "· Starting the import…";
      ui.send();
    } catch (error) {
      upload = null;
      showPhase();
      ui.fail(error);
    }
  });
})();
