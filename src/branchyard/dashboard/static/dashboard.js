// branchyard's dashboard: small progressive enhancements. Every page works without this file.
"use strict";

// Buttons that change something ask first (data-confirm on their form).
document.addEventListener("submit", (event) => {
  const question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});

// Live logs: new lines from the server's event stream (it ends every few seconds; the browser reconnects from the
// last cursor it saw, which the server sends as each event's id).
window.addEventListener("DOMContentLoaded", () => {
  const pre = document.getElementById("log-lines");
  if (!pre || !window.EventSource) return;
  const cursor = pre.getAttribute("data-cursor");
  const url = pre.getAttribute("data-stream") + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
  const source = new EventSource(url);
  const state = document.getElementById("log-state");
  source.onmessage = (event) => {
    const lines = JSON.parse(event.data);
    if (!lines.length) return;
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    for (const l of lines) {
      const span = document.createElement("span");
      span.className = "lvl-" + l.level;
      span.textContent = `${l.time} ${l.where} ${l.level.toUpperCase()} ${l.message}\n`;
      pre.appendChild(span);
    }
    while (pre.childNodes.length > 2000) pre.removeChild(pre.firstChild);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
    if (state) state.textContent = "Live: new lines appear as they are written.";
  };
});
