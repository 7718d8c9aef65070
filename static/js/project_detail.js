// Project page: follow the project's live feed (project changes, and the job list).
(function () {
  const projectId = document.currentScript.dataset.project;
  const status = document.querySelector("[data-testid=feed-status]");
  const jobRows = document.querySelector("[data-testid=job-list] tbody");
  const labels = { connecting: "connecting…", live: "live", closed: "offline, retrying…" };

  const loading = new Map(); // job id -> newest summary, while that job's row is being fetched

  async function updateJob(job) {
    let row = jobRows.querySelector(`tr[data-job="${job.id}"]`);
    if (!row) {
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

  window.Vintner.connect(`/ws/projects/${projectId}/feed/`, {
    onState(state) { status.dataset.state = state; status.textContent = labels[state]; },
    onMessage(message) {
      if (message.type === "project.updated") {
        document.querySelector("[data-testid=project-name]").textContent = message.project.name;
        document.querySelector("[data-testid=project-description]").textContent = message.project.description;
      } else if (message.type === "project.deleted") {
        location.href = "/";
      } else if (message.type === "job.updated") {
        updateJob(message.job);
      }
    },
  });
})();
