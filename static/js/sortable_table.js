// Tables marked data-sortable: a click on a column's name (a button in a <th data-sort="number|text">)
// sorts the rows by that column, numbers largest first and text A to Z; a second click reverses.
// Cells give their sort value in data-value (the shown text may be rounded or abbreviated).
(function () {
  const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  function value(row, index, numeric) {
    const cell = row.cells[index];
    const raw = cell ? (cell.dataset.value ?? cell.textContent.trim()) : "";
    if (!numeric) return raw;
    const number = Number.parseFloat(raw);
    return Number.isNaN(number) ? -Infinity : number;
  }

  function sort(table, header) {
    const headers = Array.from(header.parentElement.children);
    const index = headers.indexOf(header);
    const numeric = header.dataset.sort === "number";
    const current = header.getAttribute("aria-sort");
    const first = numeric ? "descending" : "ascending";
    const order = current === first ? (first === "ascending" ? "descending" : "ascending") : first;
    const sign = order === "ascending" ? 1 : -1;
    const body = table.tBodies[0];
    const rows = Array.from(body.rows).map((row, position) => ({ row, position, key: value(row, index, numeric) }));
    rows.sort((a, b) => {
      const by = numeric ? (a.key === b.key ? 0 : a.key < b.key ? -1 : 1) : collator.compare(a.key, b.key);
      return by * sign || a.position - b.position; // stable: ties keep their order
    });
    const fragment = document.createDocumentFragment();
    rows.forEach(({ row }) => fragment.appendChild(row));
    body.appendChild(fragment);
    headers.forEach((th) => th.removeAttribute("aria-sort"));
    header.setAttribute("aria-sort", order);
    table.dataset.sortedBy = `${index}:${order}`;
  }

  document.querySelectorAll("table[data-sortable]").forEach((table) => {
    table.querySelectorAll("th[data-sort] button").forEach((button) => {
      button.addEventListener("click", () => sort(table, button.closest("th")));
    });
  });
})();
