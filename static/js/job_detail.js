// Job page: replays the stored events, then follows live ones. Keeps the page responsive with
// 100k log lines: lines are rendered once per animation frame and only the newest MAX_LINES
// stay in the page (the full log is a download away).
(function () {
  const jobId = document.currentScript.dataset.job;
  const $ = (id) => document.querySelector(`[data-testid=${id}]`);
  const MAX_LINES = 5000;
  const TERMINAL = ["succeeded", "failed", "cancelled"];

  let pendingLines = [];
  let trimmed = 0;
  let firstProgress = null;
  const charts = new Map(); // metric name -> {plot, xs, ys}
  const dirtyCharts = new Set();
  let frameRequested = false;

  const log = $("log");
  const follow = $("follow");
  log.addEventListener("scroll", () => {
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 4;
    if (!atBottom && follow.checked && !log.dataset.autoscrolling) follow.checked = false;
  });

  function schedule() {
    if (!frameRequested) { frameRequested = true; requestAnimationFrame(render); }
  }

  function render() {
    frameRequested = false;
    if (pendingLines.length) {
      const fragment = window.Vintner.logLines(pendingLines.slice(-MAX_LINES));
      trimmed += Math.max(0, pendingLines.length - MAX_LINES);
      pendingLines = [];
      log.appendChild(fragment);
      let excess = log.childElementCount - MAX_LINES - (log.querySelector(".trimmed") ? 1 : 0);
      while (excess-- > 0) { log.removeChild(log.querySelector(".line")); trimmed++; }
      if (trimmed) {
        let note = log.querySelector(".trimmed");
        if (!note) { note = document.createElement("div"); note.className = "trimmed"; log.prepend(note); }
        note.textContent = `${trimmed} earlier lines are not shown here: download the full log.`;
      }
      if (follow.checked) {
        log.dataset.autoscrolling = "1";
        log.scrollTop = log.scrollHeight;
        requestAnimationFrame(() => delete log.dataset.autoscrolling);
      }
    }
    for (const name of dirtyCharts) {
      const chart = charts.get(name);
      chart.plot.setData([chart.xs, chart.ys]);
    }
    dirtyCharts.clear();
  }

  function chartFor(name) {
    if (!charts.has(name)) {
      $("charts-card").hidden = false;
      const box = document.createElement("div");
      box.className = "chart";
      box.dataset.metric = name;
      $("charts").appendChild(box);
      const width = Math.max(280, Math.min(560, box.clientWidth || 480));
      const plot = new uPlot({
        title: name, width, height: 220,
        scales: { x: { time: false } },
        series: [{ label: "step" }, { label: name, stroke: "#6d28d9", width: 2 }],
      }, [[], []], box);
      charts.set(name, { plot, xs: [], ys: [] });
    }
    return charts.get(name);
  }

  function showState(state, data) {
    const badge = $("job-state");
    badge.textContent = state;
    badge.className = `state ${state}`;
    if (data.host) $("job-host").textContent = data.host;
    if (data.attempt) $("job-attempts").textContent = data.attempt;
    if (data.error) { $("job-error").textContent = data.error; $("job-error").hidden = false; }
    if (data.result) { $("job-result").textContent = JSON.stringify(data.result, null, 2); $("job-result").hidden = false; }
    if (data.result && (data.result.artifact || data.result.dataset)) showOutput(data.result);
    const cancel = $("cancel-form");
    if (cancel) cancel.hidden = TERMINAL.includes(state);
    if (TERMINAL.includes(state)) $("job-eta").textContent = "—";
    if (state === "succeeded") showProgress(1, null);
  }

  // What the job made: a link, filled from the URL patterns the page carries (ids end them).
  function showOutput(result) {
    const box = $("job-output"), link = box.querySelector("a");
    const [kind, id] = result.artifact ? ["artifact", result.artifact] : ["dataset", result.dataset];
    link.href = link.dataset[`${kind}Url`].replace(/0\/$/, `${id}/`);
    link.textContent = `${kind} #${id}`;
    box.hidden = false;
  }

  function showProgress(progress, at) {
    $("job-progress").value = progress;
    $("job-percent").textContent = `${Math.floor(progress * 100)}%`;
    if (at === null) return;
    if (!firstProgress || progress < firstProgress.progress) firstProgress = { progress, at };
    const done = progress - firstProgress.progress;
    if (done > 0 && progress < 1) {
      const seconds = ((1 - progress) * (at - firstProgress.at)) / done;
      $("job-eta").textContent = seconds < 90 ? `${Math.round(seconds)} s` : `${Math.round(seconds / 60)} min`;
    }
  }

  function apply(event) {
    const data = event.data;
    switch (event.kind) {
      case "log": pendingLines.push(data); break;
      case "progress": showProgress(data.progress, event.at); break;
      case "stage": $("job-stage").textContent = data.stage; break;
      case "metric": {
        const chart = chartFor(data.name);
        chart.xs.push(data.step ?? chart.xs.length + 1);
        chart.ys.push(data.value);
        dirtyCharts.add(data.name);
        break;
      }
      case "state":
        showState(data.state, data);
        if (data.state === "queued" && data.reason) pendingLines.push({ level: "warning", message: `Queued again: ${data.reason}` });
        break;
    }
  }

  window.Vintner.jobEvents(jobId, (events) => {
    events.forEach(apply);
    schedule();
  });
})();
