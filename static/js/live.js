// One helper for every live page: a websocket that reconnects with backoff and reports its state,
// by default in the page's [data-testid=feed-status] badge.
// `path` may be a function, so a reconnect can say what it has already seen.
window.Vintner = window.Vintner || {};
(function () {
  const labels = { connecting: "connecting…", live: "live", closed: "offline, retrying…" };
  function showState(state) {
    const status = document.querySelector("[data-testid=feed-status]");
    status.dataset.state = state;
    status.textContent = labels[state];
  }

  window.Vintner.connect = function (path, { onMessage, onState = showState }) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    let delay = 500;
    let socket;
    function open() {
      onState("connecting");
      const target = typeof path === "function" ? path() : path;
      socket = new WebSocket(`${scheme}://${location.host}${target}`);
      socket.onopen = () => { delay = 500; onState("live"); };
      socket.onmessage = (event) => onMessage(JSON.parse(event.data));
      socket.onclose = () => {
        onState("closed");
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      };
    }
    open();
    return () => socket;
  };
})();
