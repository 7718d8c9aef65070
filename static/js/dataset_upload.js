// Dataset upload page: send the archive over tus (resumable, in chunks, retried), hash it with
// SHA-256 in the browser at the same time, then submit the form with just the upload's id and
// the hash, so the server can tell that what arrived is what was chosen.
(function () {
  const form = document.querySelector("[data-testid=upload-form]");
  const $ = (id) => form.querySelector(`[data-testid=${id}]`);
  const fields = $("upload-fields");
  const fileInput = form.querySelector("input[type=file]");
  const nameInput = form.elements.name;
  const submit = $("upload-submit");
  const pause = $("upload-pause");
  const errorBox = $("upload-error");

  const CHUNK = 32 * 2 ** 20; // under the server's 64 MiB per PATCH, which it buffers whole
  const HASH_SLICE = 8 * 2 ** 20;

  let upload = null; // the tus upload in progress
  let busy = false; // between pressing the button and the form leaving
  let paused = false;
  let uploadedUrl = null;
  let hashing = null; // {file, promise, done, total}
  let autoName = "";
  let speed = null; // {bytes, at, rate}: smoothed bytes per second

  // --- Words for numbers ------------------------------------------------------------------
  function bytes(n) {
    const units = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    const shown = n < 10 && i > 0 ? n.toFixed(1).replace(/\.0$/, "") : Math.round(n);
    return `${shown} ${units[i]}`;
  }
  function duration(seconds) {
    if (seconds < 90) return `${Math.max(1, Math.round(seconds))} s`;
    if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
    return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
  }

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
    errorBox.hidden = true;
    if (!file) return;
    // Name the dataset after the file unless the user typed a name of their own.
    if (!nameInput.value || nameInput.value === autoName) {
      autoName = file.name.replace(/\.(tar\.gz|tgz|tar|zip)$/i, "").slice(0, 100);
      nameInput.value = autoName;
    }
  }
  fileInput.addEventListener("change", chosen);
  if (fileInput.files.length) chosen(); // chosen before this script had loaded

  // --- SHA-256 in the browser, slice by slice, alongside the upload --------------------------
  function hashOf(file) {
    if (hashing && hashing.file === file) return hashing.promise; // a retry reuses the hash
    const state = { file, done: 0, total: file.size };
    state.promise = (async () => {
      const hasher = await hashwasm.createSHA256();
      hasher.init();
      for (let start = 0; start < file.size; start += HASH_SLICE) {
        const slice = file.slice(start, Math.min(start + HASH_SLICE, file.size));
        hasher.update(new Uint8Array(await slice.arrayBuffer()));
        state.done = start + slice.size;
        if (uploadedUrl) showPhase();
      }
      return hasher.digest("hex");
    })();
    state.promise.catch(() => { if (hashing === state) hashing = null; }); // try again on retry
    hashing = state;
    return state.promise;
  }

  // --- Showing where things stand ----------------------------------------------------------
  function showProgress(done, total) {
    $("upload-progress").value = total ? done / total : 0;
    $("upload-percent").textContent = `${Math.floor((total ? done / total : 0) * 100)}%`;
    $("upload-bytes").textContent = `${bytes(done)} of ${bytes(total)}`;
    const now = performance.now();
    if (!speed || done < speed.bytes) {
      speed = { bytes: done, at: now, rate: speed ? speed.rate : null };
    } else if (now - speed.at >= 500) {
      const rate = ((done - speed.bytes) * 1000) / (now - speed.at);
      speed = { bytes: done, at: now, rate: speed.rate === null ? rate : 0.8 * speed.rate + 0.2 * rate };
    }
    if (speed.rate && done < total) {
      $("upload-speed").textContent = `· ${(speed.rate / 1e6).toFixed(1)} MB/s`;
      $("upload-eta").textContent = `· ${duration((total - done) / speed.rate)} left`;
    } else {
      $("upload-speed").textContent = $("upload-eta").textContent = "";
    }
  }

  function showPhase() {
    let text = "";
    if (paused) text = "· paused";
    else if (uploadedUrl && hashing) {
      const share = hashing.total ? Math.floor((hashing.done / hashing.total) * 100) : 100;
      text = `· Verifying… ${share}%`;
    }
    $("upload-phase").textContent = text;
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function describe(error) {
    const response = error && error.originalResponse;
    if (response) {
      try {
        const detail = JSON.parse(response.getBody()).detail;
        if (detail) return detail;
      } catch (_) { /* not JSON: fall through */ }
      return `The server refused the upload (HTTP ${response.getStatus()}).`;
    }
    if (error && error.originalRequest) {
      return "The server could not be reached, even after several retries; check the connection.";
    }
    return (error && error.message) || String(error);
  }

  function setBusy(value) {
    busy = value;
    fields.disabled = value;
    submit.disabled = value;
    submit.textContent = value ? "Uploading…" : uploadedUrl || fileInput.files.length ? "Retry upload" : "Upload and import";
    pause.hidden = !value;
  }

  function fail(error) {
    // No abort() here: on an error nothing runs, and abort() would blank the XHR the message is read from.
    upload = null;
    paused = false;
    setBusy(false);
    showPhase();
    showError(`${describe(error)} What was uploaded is kept: press Retry upload to continue from there.`);
  }

  // --- The upload --------------------------------------------------------------------------
  function csrfToken() {
    return form.elements.csrfmiddlewaretoken.value;
  }

  async function offsetOf(url) {
    // Only to say how much is there already; tus-js-client asks again itself before resuming.
    try {
      const response = await fetch(url, { method: "HEAD", headers: { "Tus-Resumable": "1.0.0" }, cache: "no-store" });
      return response.ok ? Number(response.headers.get("Upload-Offset")) : null;
    } catch (_) {
      return null;
    }
  }

  function send(file) {
    return new Promise((resolve, reject) => {
      const current = new tus.Upload(file, {
        endpoint: form.dataset.endpoint,
        chunkSize: CHUNK,
        retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
        metadata: { filename: file.name, filetype: file.type || "application/octet-stream", project: form.dataset.project },
        headers: { "X-CSRFToken": csrfToken() },
        removeFingerprintOnSuccess: true,
        // The same file for another project is another upload: it belongs to that project's team.
        fingerprint: (f) => Promise.resolve(
          ["vintner", form.dataset.project, f.name, f.type, f.size, f.lastModified].join("-")),
        onProgress: showProgress,
        onError: reject,
        onSuccess: () => resolve(current.url),
      });
      upload = current;
      current.findPreviousUploads().then(async (previous) => {
        if (previous.length) {
          const latest = previous.sort((a, b) => new Date(b.creationTime) - new Date(a.creationTime))[0];
          current.resumeFromPreviousUpload(latest);
          const offset = await offsetOf(latest.uploadUrl);
          if (offset) {
            const note = $("upload-resume");
            note.textContent = `Resuming: ${bytes(offset)} of ${bytes(file.size)} already uploaded.`;
            note.hidden = false;
            showProgress(offset, file.size);
          }
        }
        if (!paused) current.start(); // else the Resume button starts it
      }, reject);
    });
  }

  pause.addEventListener("click", () => {
    if (!upload) return;
    paused = !paused;
    if (paused) {
      upload.abort(); // keeps the upload on the server; start() continues it
      $("upload-speed").textContent = $("upload-eta").textContent = "";
    } else {
      speed = null;
      upload.start();
    }
    pause.textContent = paused ? "Resume" : "Pause";
    showPhase();
  });

  window.addEventListener("beforeunload", (event) => {
    if (busy) { event.preventDefault(); event.returnValue = ""; }
  });

  form.addEventListener("submit", async (event) => {
    const file = fileInput.files[0];
    if (!file && form.elements.upload.value) return; // the kept upload goes as it is
    event.preventDefault();
    if (busy || !file) return;
    errorBox.hidden = true;
    uploadedUrl = null;
    speed = null;
    $("upload-resume").hidden = true;
    $("upload-status").hidden = false;
    showProgress(0, file.size);
    setBusy(true);
    showPhase();
    try {
      const digest = hashOf(file);
      uploadedUrl = await send(file);
      showProgress(file.size, file.size);
      pause.hidden = true;
      showPhase();
      const sha256 = await digest;
      form.elements.upload.value = uploadedUrl.replace(/\/+$/, "").split("/").pop();
      form.elements.sha256.value = sha256;
      form.elements.archive_name.value = file.name;
      $("upload-phase").textContent = "· Starting the import…";
      busy = false;
      fields.disabled = false; // disabled fields would not be sent
      form.submit();
    } catch (error) {
      fail(error);
    }
  });
})();
