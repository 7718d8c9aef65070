// Project page: follow the project's live feed.
(function () {
  const projectId = document.currentScript.dataset.project;
  const status = document.querySelector("[data-testid=feed-status]");
  const labels = { connecting: "connecting…", live: "live", closed: "offline, retrying…" };
  window.Vintner.connect(`/ws/projects/${projectId}/feed/`, {
    onState(state) { status.dataset.state = state; status.textContent = labels[state]; },
    onMessage(message) {
      if (message.type === "project.updated") {
        document.querySelector("[data-testid=project-name]").textContent = message.project.name;
        document.querySelector("[data-testid=project-description]").textContent = message.project.description;
      } else if (message.type === "project.deleted") {
        location.href = "/";
      }
    },
  });
})();
