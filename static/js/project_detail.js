// Project page: follow the project's live feed (project changes, the job list, and the datasets
// and models cards, whose rows waiting on a job carry data-job).
(function () {
  const projectId = document.currentScript.dataset.project;
  const jobRows = document.querySelector("[data-testid=job-list] tbody");

  const loading = new Map(); // job id -> newest summary, while that job's row is being fetched
  const ACTIVE = ["queued", "running"];
  const CARDS = { dataset_import: "datasets", model_import: "models" }; // job kind -> the card it fills
  const refreshing = new Map(); // card id -> {again}: a fetch of that card is under way
  const seen = new Set(); // jobs this page has had a summary of

  async function updateJob(job) {
    let row = jobRows.querySelector(`tr[data-job="${job.id}"]`);
    if (!row) {
      if (document.getElementById("jobs").dataset.newest !== "true") return; // a page of older jobs
      // A job this page has not shown yet: render it with the same partial as the first load.
      // Updates arriving meanwhile are kept, and the newest is applied once the row is in.
      const fetching = loading.has(job.id);
      loading.set(job.id, job);
      if (fetching) return;
      let html = null;
      try {
        const response = await fetch(`/jobs/${job.id}/row/`);
        if (response.ok) html = await response.text();
      } finally {
        job = loading.get(job.id);
        loading.delete(job.id);
      }
      row = jobRows.querySelector(`tr[data-job="${job.id}"]`);
      if (!row) {
        if (html === null) return;
        jobRows.insertAdjacentHTML("afterbegin", html);
        document.querySelector("[data-testid=no-jobs]").hidden = true;
        row = jobRows.querySelector(`tr[data-job="${job.id}"]`);
      }
    }
    const state = row.querySelector("[data-field=state]");
    state.textContent = job.state;
    state.className = `state ${job.state}`;
    const bar = row.querySelector("[data-field=progress]");
    bar.value = Math.max(bar.value, job.progress);
    row.querySelector("[data-field=stage]").textContent = job.stage;
  }

  // The card as the server renders it now (counts, the new row, the report's numbers), swapped in.
  async function refreshCard(id) {
    if (refreshing.has(id)) { refreshing.get(id).again = true; return; }
    refreshing.set(id, { again: false });
    try {
      const response = await fetch(location.href, { cache: "no-store", credentials: "same-origin" });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html").getElementById(id);
      const card = document.getElementById(id);
      if (!fresh || !card) return;
      const focused = card.contains(document.activeElement) && document.activeElement.getAttribute("href");
      card.replaceWith(fresh);
      if (focused) { const again = fresh.querySelector(`[href="${CSS.escape(focused)}"]`); if (again) again.focus(); }
    } catch (_) {
      /* offline: the next summary, or a reload, brings it */
    } finally {
      const state = refreshing.get(id);
      refreshing.delete(id);
      if (state.again) refreshCard(id);
    }
  }

  function updateWaiting(job) {
    const firstSight = !seen.has(job.id);
    seen.add(job.id);
    const row = document.querySelector(`#datasets li[data-job="${job.id}"], #models li[data-job="${job.id}"]`);
    const active = ACTIVE.includes(job.state);
    if (row) {
      const bar = row.querySelector("[data-field=progress]");
      if (bar) { bar.value = Math.max(bar.value, job.progress); bar.title = job.stage; }
      if (!active) {
        const badge = row.querySelector("[data-field=state]");
        badge.textContent = job.state === "succeeded" ? "ready" : "failed";
        badge.className = `state ${badge.textContent}`;
        if (bar) bar.hidden = true;
        refreshCard(row.closest(".card").id);
      }
    } else if (CARDS[job.kind] && (firstSight || !active)) {
      refreshCard(CARDS[job.kind]); // a dataset or model this page does not show yet
    }
  }

  window.Vintner.connect(`/ws/projects/${projectId}/feed/`, {
    onMessage(message) {
      if (message.type === "project.updated") {
        document.querySelector("[data-testid=project-name]").textContent = message.project.name;
        document.querySelector("[data-testid=project-description]").textContent = message.project.description;
      } else if (message.type === "project.deleted") {
        location.href = "/";
      } else if (message.type === "job.updated") {
        updateJob(message.job);
        updateWaiting(message.job);
      }
    },
  });
})();
