// The training form: the chosen architecture's defaults as the placeholders of the fields left
// empty, settings shown only where they apply (momentum for SGD, step size and gamma for step
// decay), the architecture of a state_dict to fine-tune, the settings of the dataset's kind
// (images or text: [data-modality] elements, sent only while they apply), and the server's
// per-field messages pinned to their fields.
(function () {
  const form = document.querySelector("[data-testid=train-form]");
  if (!form) return;
  const defaults = JSON.parse(document.getElementById("train-defaults").textContent);
  const field = (name) => form.querySelector(`[data-field=${name}]`);
  const architecture = field("architecture");
  const optimizer = field("optimizer");
  const dataset = field("dataset");
  const init = field("init_artifact");
  const modality = () => (dataset.selectedOptions[0] && dataset.selectedOptions[0].dataset.kind) || "images";
  // torchvision's networks downsample 32 times; the small CNN works from 8 px.
  const minInputSize = (arch) => (arch === "small_cnn" ? 8 : 32);

  function number(value) {
    if (typeof value !== "number") return String(value);
    return Math.abs(value) > 0 && Math.abs(value) < 1e-3 ? value.toExponential() : String(value);
  }

  // {lr, weight_decay, input_size, batch_size} of an architecture with an optimizer; the view may
  // give them per optimizer ({adamw: {...}, sgd: {...}}) or flat (AdamW's).
  function defaultsFor(arch, opt) {
    const entry = defaults[arch];
    if (!entry) return {};
    if (entry[opt]) return entry[opt];
    if ("lr" in entry) {
      if (opt === "adamw") return entry;
      return { input_size: entry.input_size, batch_size: entry.batch_size }; // the optimizer's rate is the worker's to pick
    }
    return {};
  }

  function showDefaults() {
    const arch = architecture.value;
    const values = { ...defaultsFor(arch, optimizer.value) };
    const text = modality() === "text";
    if (text && init.value && values.fine_tune_lr) values.lr = values.fine_tune_lr; // fine-tuning a model's weights
    for (const input of form.querySelectorAll("[data-default]")) {
      const value = values[input.dataset.default];
      input.placeholder = value === undefined ? "architecture's default" : `default ${number(value)}`;
    }
    if (text) {
      // A text model's own weights, or its config with random weights; nothing to choose from scratch.
      const box = field("pretrained");
      box.disabled = !init.value;
      if (!init.value) box.checked = false;
      else if (box.dataset.wasChecked) box.checked = box.dataset.wasChecked === "1";
      const note = form.querySelector("[data-testid=train-pretrained-note]");
      note.hidden = Boolean(init.value);
      note.textContent = init.value ? "" : `${arch} trains from scratch with random weights.`;
      return;
    }
    const size = field("input_size");
    size.min = String(minInputSize(arch));
    // Only architectures with published ImageNet weights can start from them: the box says so.
    const pretrained = field("pretrained");
    const weights = pretrained.dataset.architectures.split(" ").includes(arch);
    pretrained.disabled = !weights;
    if (!weights) pretrained.checked = false;
    else if (pretrained.dataset.wasChecked) pretrained.checked = pretrained.dataset.wasChecked === "1";
    const pretrainedNote = form.querySelector("[data-testid=train-pretrained-note]");
    pretrainedNote.hidden = weights;
    pretrainedNote.textContent = weights ? "" : `${arch} has no pretrained weights: it trains from scratch.`;
    const note = form.querySelector("[data-testid=train-arch-note]");
    const batch = values.batch_size ? ` For ${arch}, a batch of ${values.batch_size} fits a 16 GB GPU with mixed precision.` : "";
    note.textContent = "Empty fields take the architecture's default, shown in grey." + batch +
      " Step decay multiplies the rate by gamma every step size epochs; the warm-up rises linearly from 0.";
  }

  // <label data-show-when="optimizer=sgd">: shown (and sent) only while that select has that value.
  function showApplicable() {
    for (const box of form.querySelectorAll("[data-show-when]")) {
      const [name, value] = box.dataset.showWhen.split("=");
      const applies = field(name).value === value;
      box.hidden = !applies;
      for (const input of box.querySelectorAll("input, select")) input.disabled = !applies;
    }
  }

  // [data-modality="images"|"text"]: shown, and its fields sent, only for a dataset of that kind
  // (options of the architecture and fine-tune lists too); a hidden choice gives way to one that fits.
  function showModality() {
    const kind = modality();
    for (const element of form.querySelectorAll("[data-modality]")) {
      const applies = element.dataset.modality === kind;
      if (element.tagName === "OPTION") {
        element.hidden = element.disabled = !applies;
        continue;
      }
      if (applies && element.dataset.showWhen) continue; // showApplicable decides
      element.hidden = !applies;
      for (const input of element.querySelectorAll("input, select")) input.disabled = !applies;
    }
    const fits = (select) => select.selectedOptions[0] && !select.selectedOptions[0].disabled;
    if (!fits(architecture)) {
      const first = [...architecture.options].find((o) => !o.disabled && (kind !== "text" || o.value === "bert-mini"))
        || [...architecture.options].find((o) => !o.disabled);
      if (first) architecture.value = first.value;
    }
    if (!fits(init)) init.value = "";
  }

  function refresh() {
    showApplicable();
    showModality();
    showDefaults();
    showBatchFit();
  }

  // A state_dict is weights of one architecture: training must build that one.
  function followInit() {
    const option = field("init_artifact").selectedOptions[0];
    if (option && option.dataset.format === "state_dict" && option.dataset.architecture) {
      if ([...architecture.options].some((o) => o.value === option.dataset.architecture)) {
        architecture.value = option.dataset.architecture;
      }
    }
    showDefaults();
  }

  // The server answers a refused form with messages "field: problem" (maybe "params.field").
  function markErrors() {
    let first = null;
    for (const message of document.querySelectorAll(".messages .message.error")) {
      const match = /^(?:params\.)?([a-z_]+): /.exec(message.textContent.trim());
      const input = match && field(match[1]);
      if (!input) continue;
      input.setAttribute("aria-invalid", "true");
      (input.closest(".field") || input.closest("label")).classList.add("has-error");
      first = first || input;
      input.addEventListener("input", () => {
        input.removeAttribute("aria-invalid");
        (input.closest(".field") || input.closest("label")).classList.remove("has-error");
      }, { once: true });
    }
    if (first) first.focus({ preventScroll: false });
  }

  // The largest batch that fits the smallest GPU of the train workers, redone as the architecture,
  // optimizer or input size change: workers/pipeline/batchsize.py's estimate (the server renders
  // the first one with it; this is the same arithmetic on the numbers it gives).
  const fit = JSON.parse(document.getElementById("train-batch-fit").textContent);
  const useBatch = form.querySelector("[data-testid=train-batch-use]");
  function showBatchFit() {
    const arch = architecture.value, opt = optimizer.value === "sgd" ? "sgd" : "adamw";
    const values = defaultsFor(arch, opt), base = values.batch_size, baseLr = values.lr;
    const typed = Number(field("input_size").value);
    const size = Number.isInteger(typed) && typed >= 8 && typed <= 1024 ? typed : values.input_size;
    const sentence = form.querySelector("[data-testid=train-batch-sentence]");
    const numbers = fit.architectures[arch];
    if (!numbers || !base || !baseLr || !size) return;
    let batch, lr = baseLr;
    if (!fit.gpu) {
      batch = Math.min(fit.constants.cpu, base);
      sentence.textContent = `No train worker has a GPU, so this trains on CPU: a batch of ${batch} keeps each step short; the learning rate stays at ${number(lr)}.`;
    } else {
      const gib = `${Math.round(fit.gpu.memory / 2 ** 30)} GiB`;
      const room = fit.gpu.memory * fit.constants.share - fit.constants.overhead - numbers.fixed[opt];
      const fits = room > 0 ? Math.floor(room / (numbers.per_pixel * size * size)) : 0;
      batch = Math.min(fit.constants.max, fits >= 8 ? Math.floor(fits / 8) * 8 : fits);
      if (batch < 1) {
        batch = 1;
        sentence.textContent = `${arch} at ${size} px hardly fits the ${gib} of ${fit.gpu.name}: try a smaller input size.`;
      } else {
        const rule = opt === "sgd" ? "linear" : "square root";
        lr = Math.min(10, opt === "sgd" ? baseLr * batch / base : baseLr * Math.sqrt(batch / base));
        const capped = batch === fit.constants.max ? " (the largest batch setting)" : "";
        const warmup = batch >= 4 * base ? " Warm up for an epoch or two at a batch this much larger." : "";
        sentence.textContent = `About ${batch} images of ${size} px${capped} fit the ${gib} of ${fit.gpu.name} with ${arch} ` +
          "in mixed precision (an estimate with headroom, from the activations each image keeps, the weights, gradients " +
          `and optimizer state). With it, lr ${Number(lr.toPrecision(3))}: the ${rule} rule from ${number(baseLr)} at batch ${base}.${warmup}`;
      }
    }
    lr = Number(lr.toPrecision(3));
    useBatch.dataset.batch = String(batch);
    useBatch.dataset.lr = String(lr);
    useBatch.textContent = `Use batch ${batch}, lr ${number(lr)}`;
  }
  useBatch.addEventListener("click", () => {
    field("batch_size").value = useBatch.dataset.batch;
    field("lr").value = useBatch.dataset.lr;
  });
  field("input_size").addEventListener("input", showBatchFit); // the selects refresh() it

  const pretrainedBox = field("pretrained");
  const remember = () => { pretrainedBox.dataset.wasChecked = pretrainedBox.checked ? "1" : "0"; };
  remember(); // the choice comes back when the architecture has weights again
  pretrainedBox.addEventListener("change", remember);
  field("init_artifact").addEventListener("change", followInit);
  for (const select of form.querySelectorAll("select")) select.addEventListener("change", refresh);
  refresh();
  markErrors();
  form.addEventListener("submit", () => {
    const button = form.querySelector("[data-testid=train-submit]");
    setTimeout(() => { button.disabled = true; button.textContent = "Starting…"; }, 0);
  });
})();
