// Artifact page while a job makes it (an upload's inspection, a conversion).
window.Vintner.followJob(document.currentScript.dataset.job, { panel: "inspect", badge: "artifact-state" });
