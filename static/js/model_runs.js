// A model's training runs side by side: one chart per metric, one line per run (x: epoch), and
// the table's colour keys, epochs done and best val top-1 from the same series.
(function () {
  const series = JSON.parse(document.getElementById("runs-series").textContent);
  const PALETTE = ["#6d28d9", "#f59e0b", "#0ea5e9", "#15803d", "#c81e1e", "#db2777", "#475467", "#0d9488", "#a16207", "#4f46e5"];
  const colour = (i) => PALETTE[i % PALETTE.length];
  const METRICS = {
    "epoch/val_top1": { factor: 100, range: [0, 100], format: (v) => (v == null ? "—" : `${v.toFixed(1)} %`) },
    "epoch/val_loss": { range: (u, min, max) => [0, max > 0 ? max * 1.08 : 1], format: (v) => (v == null ? "—" : v.toFixed(3)) },
    "epoch/train_loss": { range: (u, min, max) => [0, max > 0 ? max * 1.08 : 1], format: (v) => (v == null ? "—" : v.toFixed(3)) },
  };

  function chart(box) {
    const name = box.dataset.metric, spec = METRICS[name];
    const holder = box.querySelector(".plot");
    const runs = series.map((run) => new Map((run.metrics[name] || []).map(([x, y]) => [x, y * (spec.factor || 1)])));
    const xs = [...new Set(runs.flatMap((points) => [...points.keys()]))].sort((a, b) => a - b);
    const columns = runs.map((points) => xs.map((x) => (points.has(x) ? points.get(x) : null)));
    box.dataset.points = String(runs.reduce((sum, points) => sum + points.size, 0));
    const width = () => Math.max(260, holder.clientWidth || 480);
    const plot = new uPlot({
      width: width(), height: 240,
      scales: { x: { time: false }, y: { range: spec.range } },
      axes: [{ label: "epoch", labelSize: 20, size: 36 }, { size: 58 }],
      series: [
        { label: "epoch" },
        ...series.map((run, i) => ({
          label: `${run.label} · ${run.state}`, stroke: colour(i), width: 2, spanGaps: true,
          points: { show: true, size: 5, fill: colour(i), stroke: colour(i) }, value: (u, v) => spec.format(v),
        })),
      ],
    }, [xs, ...columns], holder);
    if (window.ResizeObserver) {
      new ResizeObserver(() => {
        const w = width();
        if (Math.abs(w - plot.width) > 2) plot.setSize({ width: w, height: 240 });
      }).observe(holder);
    }
  }

  document.querySelectorAll(".runs-charts [data-metric]").forEach(chart);

  series.forEach((run, i) => {
    const row = document.querySelector(`[data-testid=run-row][data-job="${run.job}"]`);
    if (!row) return;
    row.querySelector("[data-field=key]").style.background = colour(i);
    const top1 = run.metrics["epoch/val_top1"] || [];
    if (top1.length) {
      const [epoch, value] = top1.reduce((best, point) => (point[1] > best[1] ? point : best));
      row.querySelector("[data-field=best]").textContent = `${(value * 100).toFixed(1)} %`;
      row.querySelector("[data-field=best]").title = `epoch ${epoch}`;
      const cell = row.querySelector("[data-field=epochs]");
      const done = Math.max(...top1.map(([x]) => x));
      if (String(done) !== cell.dataset.total) cell.textContent = `${done}/${cell.dataset.total}`;
    }
  });
})();
