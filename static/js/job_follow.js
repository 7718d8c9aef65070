// A job's events on a page (needs live.js): the job page and the pages of what a job makes.
window.Vintner = window.Vintner || {};

// Calls onEvents with each batch of the job's events, each event once and in order: the stored
// ones first, then live ones; a reconnect asks only for what came after the last one seen.
window.Vintner.jobEvents = function (jobId, onEvents) {
  let lastSeq = 0;
  return window.Vintner.connect(() => `/ws/jobs/${jobId}/?after=${lastSeq}`, {
    onMessage(message) {
      if (message.type !== "events") return;
      const fresh = [];
      for (const event of message.events) {
        if (event.seq <= lastSeq) continue; // never twice
        lastSeq = event.seq;
        fresh.push(event);
      }
      onEvents(fresh);
    },
  });
};

// Log events' data as the page's lines: one <div class="line LEVEL"> each, in a fragment.
window.Vintner.logLines = function (lines) {
  const fragment = document.createDocumentFragment();
  for (const line of lines) {
    const div = document.createElement("div");
    div.className = `line ${line.level}`;
    div.textContent = line.message;
    fragment.appendChild(div);
  }
  return fragment;
};

// The live panel of a page whose subject a job makes (a dataset's import, an artifact's
// inspection or conversion): progress, stage and the newest log lines, in the elements with
// data-testid `${panel}-progress`, `-percent`, `-stage` and `-log`; the `badge` element says
// ready or failed when the job ends, and the page reloads, since what the job made (or why it
// failed) is rendered by the server.
window.Vintner.followJob = function (jobId, { panel, badge }) {
  const $ = (id) => document.querySelector(`[data-testid=${id}]`);
  const MAX_LINES = 200;
  const TERMINAL = ["succeeded", "failed", "cancelled"];

  const log = $(`${panel}-log`);
  let pendingLines = [];
  let frameRequested = false;
  let finished = false;
  let reloading = false;

  function render() {
    frameRequested = false;
    if (!pendingLines.length) return;
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 4;
    log.appendChild(window.Vintner.logLines(pendingLines.slice(-MAX_LINES)));
    pendingLines = [];
    while (log.childElementCount > MAX_LINES) log.removeChild(log.firstElementChild);
    if (atBottom) log.scrollTop = log.scrollHeight; // follow, unless the user scrolled up to read
  }

  function showProgress(progress) {
    const bar = $(`${panel}-progress`);
    bar.value = Math.max(bar.value, progress);
    $(`${panel}-percent`).textContent = `${Math.floor(bar.value * 100)}%`;
  }

  function apply(event) {
    const data = event.data;
    switch (event.kind) {
      case "log": pendingLines.push(data); break;
      case "progress": showProgress(data.progress); break;
      case "stage": $(`${panel}-stage`).textContent = data.stage; break;
      case "state": {
        if (TERMINAL.includes(data.state)) {
          finished = true;
          if (data.state === "succeeded") showProgress(1);
          const state = $(badge);
          state.textContent = data.state === "succeeded" ? "ready" : "failed";
          state.className = `state ${state.textContent}`;
        } else if (data.state === "queued" && data.reason) {
          pendingLines.push({ level: "warning", message: `Queued again: ${data.reason}` });
        }
        break;
      }
    }
  }

  window.Vintner.jobEvents(jobId, (events) => {
    events.forEach(apply);
    if (!frameRequested) { frameRequested = true; requestAnimationFrame(render); }
    if (finished && !reloading) {
      reloading = true;
      setTimeout(() => location.reload(), 400);
    }
  });
};
