// A training run's view on its job page: the strip (epoch k/N, best val top-1, ETA, device, the
// share of the last epoch spent waiting for data, the GPU's busy share) and five charts sharing an
// x axis in epochs: loss (per-step train loss, thin, with the per-epoch train and val losses),
// accuracy in %, learning rate, throughput, and each epoch's data wait against compute. Step metrics are placed
// at step / steps per epoch; the run's log says how many steps an epoch has ("… N epochs of S
// steps"), else it is derived from the last step seen when an epoch's metrics arrive.
// The charts are rebuilt from every point kept, so a replay after a reload draws them whole.
window.Vintner = window.Vintner || {};
window.Vintner.trainingView = function ({ epochs = null, terminal = [] } = {}) {
  const $ = (id) => document.querySelector(`[data-testid=${id}]`);
  const percent = (v) => (v == null ? "—" : `${v.toFixed(1)} %`);
  const plain = (digits) => (v) => (v == null ? "—" : Number(v.toFixed(digits)).toString());
  function small(v) {
    if (v == null) return "—";
    if (v === 0) return "0";
    return Math.abs(v) < 0.01 ? v.toExponential(1) : Number(v.toPrecision(3)).toString();
  }
  const fromZero = (u, min, max) => [0, max > 0 ? max * 1.08 : 1];
  const GROUPS = [
    { id: "loss", range: fromZero, format: plain(3), series: [
      { name: "train/loss", label: "train loss (steps)", stroke: "rgba(109, 40, 217, .35)", width: 1, perStep: true },
      { name: "epoch/train_loss", label: "train loss", stroke: "#6d28d9", width: 2, points: true },
      { name: "epoch/val_loss", label: "val loss", stroke: "#f59e0b", width: 2, points: true },
    ] },
    { id: "accuracy", range: [0, 100], factor: 100, format: percent, series: [
      { name: "epoch/val_top1", label: "val top-1", stroke: "#15803d", width: 2.5, points: true },
      { name: "epoch/val_top5", label: "val top-5", stroke: "#0ea5e9", width: 1.5, dash: [6, 4], points: true },
      { name: "epoch/train_top1", label: "train top-1", stroke: "#6d28d9", width: 1.5, points: true },
      { name: "epoch/val_f1", label: "val macro-F1", stroke: "#b91c1c", width: 1.5, dash: [2, 3], points: true }, // text runs
    ] },
    { id: "lr", range: fromZero, format: small, series: [
      { name: "train/lr", label: "learning rate", stroke: "#0ea5e9", width: 1.5, perStep: true },
    ] },
    { id: "throughput", range: fromZero, format: plain(0), series: [
      { name: "train/img_per_s", label: "images/s", stroke: "#15803d", width: 1.5, perStep: true },
      { name: "train/rows_per_s", label: "rows/s", stroke: "#0ea5e9", width: 1.5, perStep: true }, // text runs
    ] },
    { id: "time", range: fromZero, format: plain(1), series: [
      { name: "epoch/data_wait_s", label: "waiting for data", stroke: "#f59e0b", width: 2, points: true },
      { name: "epoch/compute_s", label: "computing", stroke: "#15803d", width: 2, points: true },
    ] },
  ];
  // Shown in the strip, not charted: the last epoch's share of waiting, the GPU's busy share.
  const STRIP = new Set(["epoch/data_wait_share", "epoch/device_util", "train/device_util"]);
  const STARVED = 0.5; // workers/pipeline/timing.py STARVED_SHARE: past it, the page says what to do
  const IGNORED = new Set(["epoch/lr", "epoch/epoch"]); // the lr chart has it per step already
  const groupOf = new Map();
  for (const group of GROUPS) for (const s of group.series) groupOf.set(s.name, group);

  const points = new Map(); // metric name -> Map(step or epoch -> value); a resumed run overwrites
  let stepsPerEpoch = null, derivedSteps = null, lastStep = 0;
  let epoch = 0, best = null, eta = null, device = null, finished = false, stoppedEarly = false;
  let waiting = null, busy = null; // {value, epoch} of the latest epoch's data wait share; the GPU's busy share
  const dirty = new Set();
  let stripDirty = true;

  // uPlot takes one x array per chart: the union of its series' x, the gaps null (spanned).
  function build(group) {
    const spe = stepsPerEpoch || derivedSteps;
    const perSeries = group.series.map((s) => {
      const stored = points.get(s.name);
      if (!stored) return [];
      const out = [];
      for (const [x, y] of stored) out.push([s.perStep ? (spe ? x / spe : x) : x, y * (group.factor || 1)]);
      return out;
    });
    const xs = [...new Set(perSeries.flatMap((pairs) => pairs.map(([x]) => x)))].sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    let count = 0;
    const columns = perSeries.map((pairs) => {
      const column = new Array(xs.length).fill(null);
      for (const [x, y] of pairs) column[index.get(x)] = y;
      count += pairs.length;
      return column;
    });
    return { data: [xs, ...columns], count };
  }

  function makePlot(group) {
    const box = $(`chart-${group.id}`);
    const holder = box.querySelector(".plot");
    const width = () => Math.max(260, holder.clientWidth || 480);
    const plot = new uPlot({
      width: width(), height: 230,
      scales: { x: { time: false }, y: { range: group.range } },
      axes: [
        { label: "epoch", labelSize: 20, size: 36 },
        { size: 58, values: (u, splits) => splits.map((v) => (v == null ? "" : group.format === percent ? `${v}` : group.format(v))) },
      ],
      series: [
        { label: "epoch", value: (u, v) => (v == null ? "—" : Number(v.toFixed(2)).toString()) },
        ...group.series.map((s) => ({
          label: s.label, stroke: s.stroke, width: s.width, dash: s.dash, spanGaps: true,
          points: { show: !!s.points, size: 6, fill: s.stroke, stroke: s.stroke },
          value: (u, v) => group.format(v),
        })),
      ],
    }, [[], ...group.series.map(() => [])], holder);
    if (window.ResizeObserver) {
      new ResizeObserver(() => {
        const w = width();
        if (Math.abs(w - plot.width) > 2) plot.setSize({ width: w, height: 230 });
      }).observe(holder);
    }
    return { box, plot };
  }
  const plots = new Map(GROUPS.map((group) => [group.id, makePlot(group)]));

  function duration(seconds) {
    if (seconds == null || !isFinite(seconds)) return "—";
    if (seconds < 90) return `${Math.max(0, Math.round(seconds))} s`;
    if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
    const h = Math.floor(seconds / 3600), m = Math.round((seconds % 3600) / 60);
    return `${h} h ${String(m).padStart(2, "0")} min`;
  }

  return {
    // true when the metric is this view's (charted or shown in the strip).
    metric(data) {
      const { name, value } = data;
      const step = data.step ?? 0;
      if (name === "time/eta_s") { eta = value; stripDirty = true; return true; }
      if (STRIP.has(name)) {
        if (name === "epoch/data_wait_share" && (!waiting || step >= waiting.epoch)) waiting = { value, epoch: step };
        if (name === "train/device_util") busy = value;
        stripDirty = true;
        return true;
      }
      if (IGNORED.has(name)) return true;
      if (name.startsWith("epoch/") && step > epoch) {
        epoch = step;
        stripDirty = true;
        if (!stepsPerEpoch && lastStep && !derivedSteps) {
          derivedSteps = Math.max(1, Math.round(lastStep / step));
          GROUPS.forEach((group) => dirty.add(group));
        }
      }
      if (name === "epoch/val_top1" && (!best || value > best.value)) { best = { value, epoch: step }; stripDirty = true; }
      if (name === "train/loss") lastStep = Math.max(lastStep, step);
      const group = groupOf.get(name);
      if (!group) return false; // a metric of its own: the generic chart
      if (!points.has(name)) points.set(name, new Map());
      points.get(name).set(step, value);
      dirty.add(group);
      return true;
    },
    log(message) {
      if (typeof message !== "string") return;
      let match = /^training on (.+)$/.exec(message);
      if (match) { device = match[1]; stripDirty = true; }
      match = /(\d+) epochs of (\d+) steps/.exec(message);
      if (match) {
        epochs = Number(match[1]);
        if (Number(match[2]) !== stepsPerEpoch) { stepsPerEpoch = Number(match[2]); GROUPS.forEach((group) => dirty.add(group)); }
        stripDirty = true;
      }
      if (/^stopping early after epoch/.test(message)) { stoppedEarly = true; stripDirty = true; }
      // The run's own choice (ties go to the lower val loss), for runs whose result does not say it.
      match = /^best epoch (\d+): val top-1 ([\d.]+) %/.exec(message);
      if (match) { best = { value: Number(match[2]) / 100, epoch: Number(match[1]) }; stripDirty = true; }
    },
    state(state, result) {
      finished = terminal.includes(state);
      if (result && result.device && !device) device = result.device;
      if (result && result.val_top1 != null && result.best_epoch != null) best = { value: result.val_top1, epoch: result.best_epoch };
      stripDirty = true;
    },
    render() {
      for (const group of dirty) {
        const { box, plot } = plots.get(group.id);
        const { data, count } = build(group);
        plot.setData(data);
        box.dataset.points = String(count);
      }
      dirty.clear();
      if (!stripDirty) return;
      stripDirty = false;
      $("train-epoch").textContent = `${epoch}/${epochs ?? "?"}${stoppedEarly ? " (stopped early)" : ""}`;
      $("train-best").textContent = best ? percent(best.value * 100) : "—";
      $("train-best-epoch").textContent = best ? `epoch ${best.epoch}` : "";
      const left = finished ? "—" : duration(eta);
      $("train-eta").textContent = left;
      $("job-eta").textContent = left;
      if (device) $("train-device").textContent = device;
      $("train-data-wait").textContent = waiting ? percent(waiting.value * 100) : "—";
      if (busy != null) {
        $("train-device-util-stat").hidden = false;
        $("train-device-util").textContent = percent(busy * 100);
      }
      const hint = $("train-hint");
      hint.hidden = !(waiting && waiting.value >= STARVED);
      if (!hint.hidden) {
        const who = device && device.startsWith("cuda") ? "The GPU" : "Training";
        hint.textContent = `${who} waited for images ${Math.round(waiting.value * 100)} % of epoch ${waiting.epoch}: ` +
          "more loader processes (the workers setting, up to one per core) or the decoded-image cache would feed it faster.";
      }
    },
  };
};

// Job page: replays the stored events, then follows live ones. Keeps the page responsive with
// 100k log lines: lines are rendered once per animation frame and only the newest MAX_LINES
// stay in the page (the full log is a download away).
(function () {
  const script = document.currentScript;
  const jobId = script.dataset.job;
  const $ = (id) => document.querySelector(`[data-testid=${id}]`);
  const MAX_LINES = 5000;
  const TERMINAL = ["succeeded", "failed", "cancelled"];

  let pendingLines = [];
  let trimmed = 0;
  let firstProgress = null;
  const charts = new Map(); // metric name -> {plot, xs, ys}
  const dirtyCharts = new Set();
  let frameRequested = false;
  // Runs that train (a training job, quantization-aware training) group their metrics on a few
  // charts (window.Vintner.trainingView, above). The page says so for the kinds it knows; any other
  // job gets the charts at its first training metric, with the log lines they read kept until then.
  const TRAINING_METRIC = /^(epoch|train)\//;
  const TRAINING_LOG = /^training on |\d+ epochs of \d+ steps|^stopping early after epoch|^best epoch \d+: /;
  let training = null;
  const trainingLines = [];
  function startTraining() {
    const card = $("train-card");
    if (!training && card) {
      card.hidden = false;
      training = window.Vintner.trainingView({ epochs: Number(script.dataset.epochs) || null, terminal: TERMINAL });
      trainingLines.splice(0).forEach((message) => training.log(message));
    }
    return training;
  }
  if (script.dataset.training === "1") startTraining();

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
    if (training) training.render();
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
    if (data.detail) {
      $("job-error-detail").textContent = data.detail;
      $("job-error-detail").closest("details").hidden = false;
    }
    if (data.result) {
      $("job-result").textContent = JSON.stringify(data.result, null, 2);
      $("job-result").hidden = false;
      const folded = $("job-result").closest("details");
      if (folded) folded.hidden = false;
    }
    if (data.result && (data.result.artifact || data.result.dataset)) showOutput(data.result);
    const cancel = $("cancel-form");
    if (cancel) cancel.hidden = TERMINAL.includes(state);
    const waiting = $("job-waiting"); // why it waited its turn: over once it started or ended
    if (waiting && state !== "queued") waiting.hidden = true;
    $("feed-status").hidden = TERMINAL.includes(state); // a finished job has nothing more to stream
    if (TERMINAL.includes(state)) $("job-eta").textContent = "—";
    if (state === "succeeded") showProgress(1, null);
    if (training) training.state(state, data.result);
  }

  // What the job made: a link, filled from the URL patterns the page carries (ids end them).
  function showOutput(result) {
    const box = $("job-output"), link = box.querySelector("a");
    if (link.dataset.performanceUrl) { // a benchmark or evaluation: the measured artifact's figures
      link.href = link.dataset.performanceUrl.replace("/0/", `/${result.artifact}/`);
      link.textContent = `performance of artifact #${result.artifact}`;
      box.hidden = false;
      return;
    }
    const [kind, id] = result.artifact ? ["artifact", result.artifact] : ["dataset", result.dataset];
    link.href = link.dataset[`${kind}Url`].replace(/0\/$/, `${id}/`);
    link.textContent = `${kind} #${id}`;
    box.hidden = false;
  }

  function showProgress(progress, at) {
    $("job-progress").value = progress;
    $("job-percent").textContent = `${Math.floor(progress * 100)}%`;
    if (at === null || training) return; // a training run says its own ETA (time/eta_s)
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
      case "log":
        pendingLines.push(data);
        if (training) training.log(data.message);
        else if (typeof data.message === "string" && TRAINING_LOG.test(data.message)) trainingLines.push(data.message);
        break;
      case "progress": showProgress(data.progress, event.at); break;
      case "stage": $("job-stage").textContent = data.stage; break;
      case "metric": {
        if (!training && (TRAINING_METRIC.test(data.name) || data.name === "time/eta_s")) startTraining();
        if (training && training.metric(data)) break;
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
