// Dataset page while its import runs.
window.Vintner.followJob(document.currentScript.dataset.job, { panel: "import", badge: "dataset-state" });
