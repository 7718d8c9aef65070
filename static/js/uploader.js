// One file to the server over tus (resumable, in chunks, retried), hashed with SHA-256 in the
// browser at the same time, so the page can send the hash with the upload's id and the server
// can tell that what arrived is what was chosen. Used by the dataset and model upload pages.
//
//   const upload = Vintner.upload(file, { project, csrf, onProgress, onResume, onUploaded, onVerify });
//   upload.pause(); upload.resume();
//   const { id, sha256 } = await upload.done;   // rejects with tus's error: Vintner.uploadError(error)
//   const ui = Vintner.uploadForm(form, { retry });   // busy state, error box, sending the form
//
// Needs vendor/tus.min.js and vendor/hash-wasm-sha256.umd.min.js loaded first.
(function () {
  const Vintner = (window.Vintner = window.Vintner || {});

  const CHUNK = 32 * 2 ** 20; // under the server's 64 MiB per PATCH, which it buffers whole
  const HASH_SLICE = 8 * 2 ** 20;
  const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000, 20000];

  // --- Words for numbers ------------------------------------------------------------------
  Vintner.bytes = function (n) {
    const units = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    const shown = n < 10 && i > 0 ? n.toFixed(1).replace(/\.0$/, "") : Math.round(n);
    return `${shown} ${units[i]}`;
  };
  Vintner.duration = function (seconds) {
    if (seconds < 90) return `${Math.max(1, Math.round(seconds))} s`;
    if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
    return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
  };

  // A sentence for the user from whatever tus-js-client rejected with: the server's own
  // {"detail": …} when it answered, else what kind of failure it was.
  Vintner.uploadError = function (error) {
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
  };

  // --- SHA-256, slice by slice; a retry of the same file reuses the hash already under way ---
  const hashes = new WeakMap(); // File -> {done, total, promise, listener}

  function hashOf(file) {
    let state = hashes.get(file);
    if (state) return state;
    state = { done: 0, total: file.size, listener: null };
    state.promise = (async () => {
      const hasher = await hashwasm.createSHA256();
      hasher.init();
      for (let start = 0; start < file.size; start += HASH_SLICE) {
        const slice = file.slice(start, Math.min(start + HASH_SLICE, file.size));
        hasher.update(new Uint8Array(await slice.arrayBuffer()));
        state.done = start + slice.size;
        if (state.listener) state.listener(state.done, state.total);
      }
      return hasher.digest("hex");
    })();
    state.promise.catch(() => { if (hashes.get(file) === state) hashes.delete(file); }); // try again on retry
    hashes.set(file, state);
    return state;
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

  // --- The form around the uploads, as both upload pages have it ---------------------------
  // Busy from pressing the button until the form leaves: fields and button locked, Pause shown,
  // and leaving the page asks first. When not busy, the button says Retry upload if retry().
  Vintner.uploadForm = function (form, { retry }) {
    const $ = (id) => form.querySelector(`[data-testid=${id}]`);
    const fields = $("upload-fields");
    const submit = $("upload-submit");
    const errorBox = $("upload-error");
    const label = submit.textContent;
    const ui = {
      busy: false,
      setBusy(value) {
        ui.busy = value;
        fields.disabled = value;
        submit.disabled = value;
        submit.textContent = value ? "Uploading…" : retry() ? "Retry upload" : label;
        $("upload-pause").hidden = !value;
      },
      showError(message) {
        errorBox.textContent = message;
        errorBox.hidden = false;
      },
      hideError() { errorBox.hidden = true; },
      fail(error) {
        ui.setBusy(false);
        ui.showError(`${Vintner.uploadError(error)} What was uploaded is kept: press Retry upload to continue from there.`);
      },
      send() {
        ui.busy = false;
        fields.disabled = false; // disabled fields would not be sent
        form.submit();
      },
    };
    window.addEventListener("beforeunload", (event) => {
      if (ui.busy) { event.preventDefault(); event.returnValue = ""; }
    });
    return ui;
  };

  // --- The upload --------------------------------------------------------------------------
  Vintner.upload = function (file, options) {
    const {
      project, csrf, endpoint = "/api/v1/uploads/", chunkSize = CHUNK,
      onProgress = () => {}, onResume = () => {}, onUploaded = () => {}, onVerify = () => {},
    } = options;
    let current = null; // the tus upload
    let paused = false;
    let uploaded = false;
    let speed = null; // {bytes, at, rate}: smoothed bytes per second

    // Progress with speed and time left, for the page to show as it likes.
    function progress(sent, total) {
      const now = performance.now();
      if (!speed || sent < speed.bytes) {
        speed = { bytes: sent, at: now, rate: speed ? speed.rate : null };
      } else if (now - speed.at >= 500) {
        const rate = ((sent - speed.bytes) * 1000) / (now - speed.at);
        speed = { bytes: sent, at: now, rate: speed.rate === null ? rate : 0.8 * speed.rate + 0.2 * rate };
      }
      const rate = !paused && speed.rate && sent < total ? speed.rate : null;
      onProgress({ sent, total, rate, eta: rate ? (total - sent) / rate : null });
    }

    const hash = hashOf(file);
    hash.listener = (done, total) => { if (uploaded) onVerify({ done, total }); };

    const sent = new Promise((resolve, reject) => {
      current = new tus.Upload(file, {
        endpoint,
        chunkSize,
        retryDelays: RETRY_DELAYS,
        metadata: { filename: file.name, filetype: file.type || "application/octet-stream", project: String(project) },
        headers: { "X-CSRFToken": csrf },
        removeFingerprintOnSuccess: true,
        // The same file for another project is another upload: it belongs to that project's team.
        fingerprint: (f) => Promise.resolve(["vintner", project, f.name, f.type, f.size, f.lastModified].join("-")),
        onProgress: progress,
        onError: reject,
        onSuccess: () => resolve(current.url),
      });
      current.findPreviousUploads().then(async (previous) => {
        if (previous.length) {
          const latest = previous.sort((a, b) => new Date(b.creationTime) - new Date(a.creationTime))[0];
          current.resumeFromPreviousUpload(latest);
          const offset = await offsetOf(latest.uploadUrl);
          if (offset) {
            onResume({ offset, total: file.size });
            progress(offset, file.size);
          }
        }
        if (!paused) current.start(); // else resume() starts it
      }, reject);
    });

    const done = sent.then(async (url) => {
      uploaded = true;
      progress(file.size, file.size);
      onUploaded();
      onVerify({ done: hash.done, total: hash.total });
      const sha256 = await hash.promise;
      return { id: url.replace(/\/+$/, "").split("/").pop(), url, sha256, name: file.name, size: file.size };
    });

    return {
      done,
      get paused() { return paused; },
      pause() {
        if (paused || uploaded) return;
        paused = true;
        current.abort(); // keeps the upload on the server; start() continues it
        speed = null;
      },
      resume() {
        if (!paused) return;
        paused = false;
        speed = null;
        current.start();
      },
    };
  };
})();
