// Artifact page while a job makes it (an upload's inspection, a conversion): follow the job's
// events — progress, stage and the newest log lines — and reload when the job ends, since the
// facts, the inputs and outputs or the error are rendered by the server.
(function () {
  const jobId = document.currentScript.dataset.job;
  const $ = (id) => document.querySelector(`[data-testid=${id}]`);
  const MAX_LINES = 200;
  const TERMINAL = ["succeeded", "failed", "cancelled"];
  const labels = { connecting: "connecting…", live: "live", closed: "offline, retrying…" };

  const log = $("inspect-log");
  let lastSeq = 0;
  let pendingLines = [];
  let frameRequested = false;
  let finished = false;
  let reloading = false;

  function render() {
    frameRequested = false;
    if (!pendingLines.length) return;
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 4;
    const fragment = document.createDocumentFragment();
    for (const line of pendingLines.slice(-MAX_LINES)) {
      const div = document.createElement("div");
      div.className = `line ${line.level}`;
      div.textContent = line.message;
      fragment.appendChild(div);
    }
    pendingLines = [];
    log.appendChild(fragment);
    while (log.childElementCount > MAX_LINES) log.removeChild(log.firstElementChild);
    if (atBottom) log.scrollTop = log.scrollHeight; // follow, unless the user scrolled up to read
  }

  function showProgress(progress) {
    const bar = $("inspect-progress");
    bar.value = Math.max(bar.value, progress);
    $("inspect-percent").textContent = `${Math.floor(bar.value * 100)}%`;
  }

  function apply(event) {
    if (event.seq <= lastSeq) return; // never twice
    lastSeq = event.seq;
    const data = event.data;
    switch (event.kind) {
      case "log": pendingLines.push(data); break;
      case "progress": showProgress(data.progress); break;
      case "stage": $("inspect-stage").textContent = data.stage; break;
      case "state": {
        if (TERMINAL.includes(data.state)) {
          finished = true;
          if (data.state === "succeeded") showProgress(1);
          const badge = $("artifact-state");
          badge.textContent = data.state === "succeeded" ? "ready" : "failed";
          badge.className = `state ${badge.textContent}`;
        } else if (data.state === "queued" && data.reason) {
          pendingLines.push({ level: "warning", message: `Queued again: ${data.reason}` });
        }
        break;
      }
    }
  }

  window.Vintner.connect(() => `/ws/jobs/${jobId}/?after=${lastSeq}`, {
    onState(state) { $("feed-status").dataset.state = state; $("feed-status").textContent = labels[state]; },
    onMessage(message) {
      if (message.type !== "events") return;
      message.events.forEach(apply);
      if (!frameRequested) { frameRequested = true; requestAnimationFrame(render); }
      // What it holds (or why it failed) is rendered by the server: fetch the page again, once.
      if (finished && !reloading) {
        reloading = true;
        setTimeout(() => location.reload(), 400);
      }
    },
  });
})();
