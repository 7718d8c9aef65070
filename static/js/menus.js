// Top-bar menus (<details>): one open at a time; a click elsewhere or Escape closes them.
(function () {
  const menus = () => document.querySelectorAll("details.switcher[open]");
  document.addEventListener("click", (event) => {
    menus().forEach((menu) => { if (!menu.contains(event.target)) menu.open = false; });
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    menus().forEach((menu) => { menu.open = false; menu.querySelector("summary").focus(); });
  });
  document.querySelectorAll("details.switcher").forEach((menu) => {
    menu.addEventListener("toggle", () => {
      if (menu.open) menus().forEach((other) => { if (other !== menu) other.open = false; });
    });
  });
})();
