// The graph view of an OpenVINO IR or ONNX model. The page embeds the graph its inspection made
// (workers/pipeline/graphs.py) with json_script; dagre (static/vendor) lays it out top to bottom,
// and this draws it as SVG: drag to pan, wheel to zoom, Fit; a click shows a node's details; the
// search box highlights matching nodes and centres each in turn (Enter: next, Shift+Enter: back).
// Names come from uploaded files: they only ever go into the page as text, never as HTML.
window.Vintner = window.Vintner || {};
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const graph = JSON.parse(document.getElementById("graph-data").textContent);
  const svg = document.querySelector("[data-testid=graph-canvas]");
  const viewport = svg.querySelector(".viewport");
  const status = document.querySelector("[data-testid=graph-status]");
  const details = document.querySelector("[data-testid=graph-details]");
  const search = document.querySelector("[data-testid=graph-search]");
  const matchCount = document.querySelector("[data-testid=graph-matches]");
  const constants = document.querySelector("[data-testid=graph-constants]");

  const nodes = new Map(graph.nodes.map((node) => [node.id, node]));
  const incoming = new Map();
  const outgoing = new Map();
  graph.edges.forEach((edge) => {
    listFor(incoming, edge.target).push(edge);
    listFor(outgoing, edge.source).push(edge);
  });

  // Colour by what an operation does; anything unknown is "shape, other".
  const CATEGORIES = [
    ["shape", /^(convert|convertlike|cast|castlike)$/i],
    ["quant", /quantize|fakeconvert/i],
    ["layer", /conv|matmul|gemm|fullyconnected|einsum|lstm|gru|rnn|attention|embedding/i],
    ["activation", /relu|sigmoid|tanh|gelu|swish|mish|elu$|softmax|softplus|softsign|clamp|clip|^erf$|^exp$/i],
    ["pool", /pool|^reduce|topk|argmax|argmin/i],
    ["norm", /norm|^mvn$|^lrn$/i],
    ["math", /^(add|sub|subtract|mul|multiply|div|divide|pow|power|sqrt|abs|neg|negative|sum|mean|max|min|maximum|minimum|floor|ceil|round|mod|floormod|log|reciprocal|sign|squareddifference|sin|cos|where|select|equal|greater|greaterequal|less|lessequal|not|and|or|xor|logical\w*|bitwise\w*)$/i],
  ];

  function category(node) {
    if (node.kind === "input" || node.kind === "output") return "io";
    if (node.kind === "const") return "const";
    const found = CATEGORIES.find(([, pattern]) => pattern.test(node.type));
    return found ? found[0] : "shape";
  }

  function listFor(map, key) {
    if (!map.has(key)) map.set(key, []);
    return map.get(key);
  }

  function shapeText(shape) {
    if (shape === null || shape === undefined) return "";
    if (!shape.length) return "scalar";
    return shape.map((dim) => (dim === null ? "?" : dim)).join("×");
  }

  function el(tag, attributes = {}, ...children) {
    const svgTags = ["g", "rect", "path", "text", "title"];
    const node = svgTags.includes(tag) ? document.createElementNS(NS, tag) : document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  // --- sizes, from the fonts the page really uses ------------------------------------------
  const family = getComputedStyle(document.body).fontFamily;
  const mono = getComputedStyle(document.documentElement).getPropertyValue("--mono") || "monospace";
  const measure = document.createElement("canvas").getContext("2d");
  function textWidth(text, font) {
    measure.font = font;
    return measure.measureText(text).width;
  }
  const TYPE_FONT = `650 12px ${family}`;
  const NAME_FONT = `10.5px ${mono}`;
  const LABEL_FONT = `10px ${mono}`;
  const MAX_NAME = 30;

  function shortName(node) {
    const name = node.name || "";
    if (name === node.type) return "";
    return name.length > MAX_NAME ? "…" + name.slice(-(MAX_NAME - 1)) : name;
  }

  function box(node) {
    const name = shortName(node);
    const width = Math.max(textWidth(node.type, TYPE_FONT), name ? textWidth(name, NAME_FONT) : 0) + 22;
    return { width: Math.max(56, Math.ceil(width)), height: name ? 38 : 26, name };
  }

  // --- layout and drawing ------------------------------------------------------------------
  let shown = [];
  let size = { width: 0, height: 0 };
  const placed = new Map(); // id -> {x, y, width, height} (centre)
  const elements = new Map(); // id -> <g>

  function visible(node) {
    return node.kind !== "const" || (constants && constants.checked);
  }

  // dagre recurses once per rank, so a deep graph in one piece overflows the stack, and its time
  // grows with the size: a long graph is laid out in pieces of about CHUNK nodes, cut in
  // topological order where the fewest nodes are read across the cut, and the pieces are stacked
  // top to bottom. An edge into a later piece enters it through a point at its top.
  const CHUNK = 400;
  const PIECE_GAP = 36;
  let generation = 0;

  async function draw() {
    const mine = ++generation;
    shown = graph.nodes.filter(visible);
    const ids = new Set(shown.map((node) => node.id));
    const edges = graph.edges.filter((edge) => ids.has(edge.source) && ids.has(edge.target));
    if (!shown.length) { // only constants: nothing until they are shown
      viewport.replaceChildren();
      placed.clear();
      elements.clear();
      size = { width: 0, height: 0 };
      return true;
    }
    const boxes = new Map(shown.map((node) => [node.id, box(node)]));
    const pieces = split(shown, edges);
    status.textContent = `Laying out ${shown.length} node${shown.length === 1 ? "" : "s"}…`;
    const pieceOf = new Map();
    pieces.forEach((piece, index) => piece.forEach((node) => pieceOf.set(node.id, index)));
    const inner = new Map(); // edge index -> its route in its target's piece
    const laid = [];
    for (const [index, piece] of pieces.entries()) {
      if (pieces.length > 1) {
        status.textContent = `Laying out ${shown.length} nodes… ${Math.round((100 * index) / pieces.length)} %`;
        await new Promise((resolve) => setTimeout(resolve, 0)); // let the page paint between pieces
        if (mine !== generation) return false; // a newer draw started
      }
      laid.push(layoutPiece(piece, edges, index, pieceOf, boxes, inner));
    }
    // Stack the pieces, each centred on the widest.
    const width = Math.max(...laid.map((piece) => piece.width), 0);
    let top = 0;
    const offsets = laid.map((piece) => {
      const offset = { x: (width - piece.width) / 2, y: top };
      top += piece.height + PIECE_GAP;
      return offset;
    });
    size = { width, height: Math.max(0, top - PIECE_GAP) };

    placed.clear();
    elements.clear();
    shown.forEach((node) => {
      const piece = pieceOf.get(node.id);
      const at = laid[piece].layout.node(node.id);
      const measured = boxes.get(node.id);
      placed.set(node.id, { x: at.x + offsets[piece].x, y: at.y + offsets[piece].y, width: measured.width, height: measured.height });
    });

    const edgeLayer = el("g", { class: "edges" });
    const nodeLayer = el("g", { class: "nodes" });
    edges.forEach((edge, index) => {
      const route = inner.get(index);
      const offset = offsets[pieceOf.get(edge.target)];
      const points = route.points.map((point) => ({ x: point.x + offset.x, y: point.y + offset.y }));
      let path = curve(points);
      if (pieceOf.get(edge.source) !== pieceOf.get(edge.target)) { // down from the source's piece first
        const from = placed.get(edge.source);
        path = bridge({ x: from.x, y: from.y + from.height / 2 }, points[0]) + path.replace(/^M[^ ]+/, "");
      }
      const label = shapeText(edge.shape);
      const tip = [edge.name, label && `[${label}]`, edge.dtype].filter(Boolean).join(" ");
      edgeLayer.append(el("g", { class: "gedge", "data-source": edge.source, "data-target": edge.target },
        el("path", { d: path, "marker-end": "url(#graph-arrow)" }),
        label && route.x !== undefined ? el("text", { x: route.x + offset.x, y: route.y + offset.y + 3.5, "text-anchor": "middle" }, label) : null,
        tip ? el("title", {}, tip) : null));
    });
    shown.forEach((node) => {
      const at = placed.get(node.id);
      const group = el("g", {
        class: `gnode cat-${category(node)}`, "data-testid": "graph-node", "data-id": node.id, "data-type": node.type,
        "data-kind": node.kind, tabindex: "0", role: "button", "aria-label": `${node.type} ${node.name}`,
        transform: `translate(${at.x - at.width / 2},${at.y - at.height / 2})`,
      },
        el("rect", { width: at.width, height: at.height, rx: 5 }),
        el("text", { class: "type", x: at.width / 2, y: at.height > 30 ? 16 : 17, "text-anchor": "middle" }, node.type),
        at.height > 30 ? el("text", { class: "name", x: at.width / 2, y: 30, "text-anchor": "middle" }, boxes.get(node.id).name) : null,
        el("title", {}, node.name ? `${node.type}: ${node.name}` : node.type));
      elements.set(node.id, group);
      nodeLayer.append(group);
    });
    viewport.replaceChildren(edgeLayer, nodeLayer);
    return true;
  }

  function split(list, edges) {
    if (list.length <= CHUNK * 1.5) return [list];
    const position = new Map(list.map((node, index) => [node.id, index]));
    const reach = new Map(); // source position -> position of its last reader
    edges.forEach((edge) => {
      const from = position.get(edge.source);
      reach.set(from, Math.max(reach.get(from) || 0, position.get(edge.target)));
    });
    const change = new Array(list.length + 1).fill(0);
    reach.forEach((to, from) => {
      if (from < to) { change[from] += 1; change[to] -= 1; }
    });
    const crossing = []; // crossing[p]: nodes up to p that nodes after p read
    change.reduce((running, delta, index) => (crossing[index] = running + delta), 0);
    const pieces = [];
    let start = 0;
    while (list.length - start > CHUNK * 1.5) {
      const aim = start + CHUNK - 1;
      let cut = aim;
      for (let p = start + Math.floor(CHUNK * 0.7); p <= start + Math.floor(CHUNK * 1.3); p++) {
        if (crossing[p] < crossing[cut] || (crossing[p] === crossing[cut] && Math.abs(p - aim) < Math.abs(cut - aim))) cut = p;
      }
      pieces.push(list.slice(start, cut + 1));
      start = cut + 1;
    }
    pieces.push(list.slice(start));
    return pieces;
  }

  function layoutPiece(piece, edges, index, pieceOf, boxes, inner) {
    const layout = new dagre.graphlib.Graph({ multigraph: true });
    layout.setGraph({ rankdir: "TB", nodesep: 24, ranksep: 34, edgesep: 10, marginx: 24, marginy: 12 });
    layout.setDefaultEdgeLabel(() => ({}));
    piece.forEach((node) => layout.setNode(node.id, { width: boxes.get(node.id).width, height: boxes.get(node.id).height }));
    const mine = [];
    edges.forEach((edge, number) => {
      if (pieceOf.get(edge.target) !== index) return;
      let source = edge.source;
      if (pieceOf.get(source) !== index) { // read from an earlier piece: enter through a point at the top
        source = "\u0000from " + source;
        if (!layout.hasNode(source)) layout.setNode(source, { width: 2, height: 2 });
      }
      const label = shapeText(edge.shape);
      layout.setEdge(source, edge.target, {
        labelpos: "r", labeloffset: 4,
        width: label ? Math.ceil(textWidth(label, LABEL_FONT)) + 4 : 0, height: label ? 12 : 0,
      }, "e" + number);
      mine.push(number);
    });
    dagre.layout(layout);
    mine.forEach((number) => {
      const edge = edges[number];
      const source = pieceOf.get(edge.source) === index ? edge.source : "\u0000from " + edge.source;
      inner.set(number, layout.edge(source, edge.target, "e" + number));
    });
    return { layout, width: layout.graph().width || 0, height: layout.graph().height || 0 };
  }

  function bridge(from, to) {
    const bend = Math.min(60, Math.max(12, (to.y - from.y) / 2));
    return `M${from.x},${from.y} C${from.x},${from.y + bend} ${to.x},${to.y - bend} ${to.x},${to.y}`;
  }

  function curve(points) {
    let path = `M${points[0].x},${points[0].y}`;
    for (let i = 1; i < points.length - 1; i++) {
      const mid = { x: (points[i].x + points[i + 1].x) / 2, y: (points[i].y + points[i + 1].y) / 2 };
      path += ` Q${points[i].x},${points[i].y} ${mid.x},${mid.y}`;
    }
    const last = points[points.length - 1];
    return `${path} L${last.x},${last.y}`;
  }

  // --- pan and zoom ------------------------------------------------------------------------
  let view = { x: 0, y: 0, k: 1 };
  let animation = 0;
  const MIN_ZOOM = 0.03;
  const MAX_ZOOM = 4;

  function apply() {
    viewport.setAttribute("transform", `translate(${view.x},${view.y}) scale(${view.k})`);
  }

  function animateTo(target) {
    cancelAnimationFrame(animation);
    const from = { ...view };
    const start = performance.now();
    const step = (now) => {
      const t = Math.min(1, (now - start) / 220);
      const ease = t * (2 - t);
      view = { x: from.x + (target.x - from.x) * ease, y: from.y + (target.y - from.y) * ease, k: from.k + (target.k - from.k) * ease };
      apply();
      if (t < 1) animation = requestAnimationFrame(step);
    };
    animation = requestAnimationFrame(step);
  }

  function zoomAt(point, k) {
    k = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, k));
    view = { x: point.x - ((point.x - view.x) * k) / view.k, y: point.y - ((point.y - view.y) * k) / view.k, k };
    apply();
  }

  function canvasSize() {
    const rect = svg.getBoundingClientRect();
    return { width: rect.width, height: rect.height };
  }

  function fitView() {
    const canvas = canvasSize();
    const k = Math.min(1.5, (canvas.width - 32) / Math.max(size.width, 1), (canvas.height - 32) / Math.max(size.height, 1));
    return { k, x: (canvas.width - size.width * k) / 2, y: (canvas.height - size.height * k) / 2 };
  }

  function startView() {
    // The whole graph where it is legible; a long one from its top, at a readable scale.
    const fit = fitView();
    if (fit.k >= 0.55) return fit;
    const canvas = canvasSize();
    const k = Math.max(0.55, Math.min(1, (canvas.width - 32) / Math.max(size.width, 1)));
    const first = placed.get(shown[0] && shown[0].id);
    const x = size.width * k <= canvas.width ? (canvas.width - size.width * k) / 2 : canvas.width / 2 - (first ? first.x : 0) * k;
    return { k, x, y: 16 };
  }

  function centreOn(id) {
    const at = placed.get(id);
    if (!at) return;
    const canvas = canvasSize();
    const k = Math.max(view.k, 0.8);
    animateTo({ k, x: canvas.width / 2 - at.x * k, y: canvas.height / 2 - at.y * k });
  }

  function point(event) {
    const rect = svg.getBoundingClientRect();
    return { x: event.clientX - rect.left, y: event.clientY - rect.top };
  }

  svg.addEventListener("wheel", (event) => {
    event.preventDefault();
    cancelAnimationFrame(animation);
    const speed = event.deltaMode === 1 ? 0.05 : 0.0018;
    zoomAt(point(event), view.k * Math.exp(-event.deltaY * speed));
  }, { passive: false });

  let drag = null;
  svg.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    cancelAnimationFrame(animation);
    const target = event.target.closest(".gnode");
    drag = { id: event.pointerId, start: point(event), view: { ...view }, moved: false, node: target && target.dataset.id };
    svg.setPointerCapture(event.pointerId);
  });
  svg.addEventListener("pointermove", (event) => {
    if (!drag || drag.id !== event.pointerId) return;
    const now = point(event);
    const dx = now.x - drag.start.x;
    const dy = now.y - drag.start.y;
    if (!drag.moved && Math.hypot(dx, dy) < 4) return;
    drag.moved = true;
    svg.classList.add("dragging");
    view = { ...drag.view, x: drag.view.x + dx, y: drag.view.y + dy };
    apply();
  });
  function endDrag(event) {
    if (!drag || drag.id !== event.pointerId) return;
    const { moved, node } = drag;
    drag = null;
    svg.classList.remove("dragging");
    if (event.type === "pointerup" && !moved) select(node || null);
  }
  svg.addEventListener("pointerup", endDrag);
  svg.addEventListener("pointercancel", endDrag);
  svg.addEventListener("focusin", (event) => { // reached with Tab: bring it into view
    const target = event.target.closest && event.target.closest(".gnode");
    if (target && !drag) centreOn(target.dataset.id);
  });
  svg.addEventListener("keydown", (event) => {
    const target = event.target.closest && event.target.closest(".gnode");
    if (target && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      select(target.dataset.id);
    }
  });

  document.querySelectorAll("[data-zoom]").forEach((button) => button.addEventListener("click", () => {
    const canvas = canvasSize();
    const middle = { x: canvas.width / 2, y: canvas.height / 2 };
    const k = button.dataset.zoom === "fit" ? null : view.k * (button.dataset.zoom === "in" ? 1.3 : 1 / 1.3);
    if (k === null) animateTo(fitView());
    else {
      const target = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, k));
      animateTo({ k: target, x: middle.x - ((middle.x - view.x) * target) / view.k, y: middle.y - ((middle.y - view.y) * target) / view.k });
    }
  }));

  // --- selection and details ---------------------------------------------------------------
  let selected = null;

  function select(id, { centre = false } = {}) {
    if (selected && elements.has(selected)) elements.get(selected).classList.remove("selected");
    viewport.querySelectorAll(".gedge.active").forEach((edge) => edge.classList.remove("active"));
    selected = id && nodes.has(id) ? id : null;
    if (selected && !visible(nodes.get(selected)) && constants) {
      constants.checked = true; // a hidden constant, reached from a node's inputs
      const wanted = selected;
      redraw().then((done) => done && select(wanted, { centre }));
      return;
    }
    if (selected && elements.has(selected)) {
      elements.get(selected).classList.add("selected");
      viewport.querySelectorAll(`.gedge[data-source="${selected}"], .gedge[data-target="${selected}"]`)
        .forEach((edge) => edge.classList.add("active"));
      if (centre) centreOn(selected);
    }
    showDetails(selected ? nodes.get(selected) : null);
  }

  function goButton(id, text) {
    const button = el("button", { type: "button", class: "link", "data-go": id }, text);
    button.addEventListener("click", () => select(id, { centre: true }));
    return button;
  }

  function tensor(port) {
    return [port.shape === null || port.shape === undefined ? "shape unknown" : `[${shapeText(port.shape)}]`, port.dtype]
      .filter(Boolean).join(" ");
  }

  function showDetails(node) {
    const title = el("h2", {}, "Node");
    if (!node) {
      details.replaceChildren(title, el("p", { class: "help" },
        "Click a node, or find one by name or type, to see its attributes and shapes."));
      return;
    }
    const parts = [title,
      el("div", { class: "node-title" }, el("strong", { "data-testid": "detail-type" }, node.type),
        el("span", { class: "badge neutral" }, { op: "operation", const: "constant", input: "input", output: "output" }[node.kind] || node.kind)),
      el("code", { class: "node-name", "data-testid": "detail-name" }, node.name || "(no name)")];

    const attrs = Object.entries(node.attrs || {});
    if (attrs.length) {
      const list = el("dl", { class: "facts", "data-testid": "detail-attrs" });
      attrs.forEach(([name, value]) => list.append(el("dt", {}, name), el("dd", {}, value)));
      parts.push(el("h3", {}, "Attributes"), list);
    }

    const inputs = incoming.get(node.id) || [];
    if (inputs.length) {
      const list = el("ul", { "data-testid": "detail-inputs" });
      inputs.forEach((edge) => {
        const source = nodes.get(edge.source);
        list.append(el("li", {}, goButton(source.id, `${source.type} ${source.name}`.trim()), " ", el("span", { class: "muted" }, tensor(edge))));
      });
      parts.push(el("h3", {}, "Inputs"), list);
    }

    if ((node.outputs || []).length) {
      const list = el("ul", { "data-testid": "detail-outputs" });
      const users = outgoing.get(node.id) || [];
      node.outputs.forEach((port, index) => {
        const item = el("li", {}, el("span", {}, tensor(port)), port.name ? el("span", { class: "muted" }, ` · ${port.name}`) : null);
        const readers = users.filter((edge) => (edge.port || 0) === index);
        readers.slice(0, 8).forEach((edge) => {
          const target = nodes.get(edge.target);
          item.append(el("div", { class: "reader" }, "→", goButton(target.id, `${target.type} ${target.name}`.trim())));
        });
        if (readers.length > 8) item.append(el("div", { class: "reader muted" }, `→ ${readers.length - 8} more`));
        list.append(item);
      });
      parts.push(el("h3", {}, "Outputs"), list);
    }
    details.replaceChildren(...parts);
  }

  // --- search ------------------------------------------------------------------------------
  let matches = [];
  let current = -1;
  let hiddenMatches = 0;

  function runSearch() {
    highlight();
    if (matches.length) step(1);
  }

  function highlight() {
    const query = search.value.trim().toLowerCase();
    const hits = (node) => node.type.toLowerCase().includes(query) || (node.name || "").toLowerCase().includes(query);
    matches = query ? shown.filter(hits).map((node) => node.id) : [];
    const hidden = query ? graph.nodes.filter((node) => !visible(node) && hits(node)).length : 0;
    const found = new Set(matches);
    svg.classList.toggle("searching", Boolean(query));
    elements.forEach((group, id) => group.classList.toggle("match", found.has(id)));
    current = -1;
    hiddenMatches = hidden;
    matchCount.textContent = query ? (matches.length ? `${matches.length} found` : "none") + (hidden ? ` +${hidden} hidden` : "") : "";
    matchCount.title = hidden ? "Matching constants are hidden: show constants to see them." : "";
  }

  function step(direction) {
    if (!matches.length) return;
    current = (current + direction + matches.length) % matches.length;
    matchCount.textContent = `${current + 1} of ${matches.length}` + (hiddenMatches ? ` +${hiddenMatches} hidden` : "");
    select(matches[current], { centre: true });
  }

  let typing = 0;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(runSearch, shown.length > 1500 ? 200 : 60);
  });
  search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      clearTimeout(typing);
      if (matches.length) step(event.shiftKey ? -1 : 1);
      else runSearch();
    } else if (event.key === "Escape") {
      search.value = "";
      runSearch();
    }
  });

  // --- start -------------------------------------------------------------------------------
  async function redraw() {
    status.hidden = false;
    let done;
    try {
      done = await draw();
    } catch (error) {
      status.textContent = `The graph could not be laid out: ${error.message}`;
      throw error;
    }
    if (!done) return false;
    status.hidden = true;
    highlight();
    return true;
  }

  if (constants) {
    constants.disabled = true; // until the first layout is done
    constants.addEventListener("change", async () => {
      const keep = selected;
      svg.dataset.ready = "false";
      constants.disabled = true;
      const done = await redraw();
      constants.disabled = false;
      if (!done) return;
      select(keep && visible(nodes.get(keep)) ? keep : null);
      svg.dataset.ready = "true";
    });
  }

  window.Vintner.graph = { select, fit: () => animateTo(fitView()) };

  // Let the "Laying out…" line paint before a big layout takes the main thread.
  requestAnimationFrame(() => setTimeout(async () => {
    try {
      if (!(await draw())) return;
    } catch (error) {
      status.textContent = `The graph could not be laid out: ${error.message}`;
      throw error;
    }
    view = startView();
    apply();
    status.hidden = true;
    if (constants) constants.disabled = false;
    svg.dataset.ready = "true";
  }, 0));
})();
