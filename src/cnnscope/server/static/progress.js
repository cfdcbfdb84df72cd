// Progress for anything that may take more than half a second: a spinner, what is being
// done, and the seconds so far, so no wait is silent. `data-progress` marks the element
// while it runs (tests and styles read it).

/** Show `text` as running in `node`; the returned function ends it (a second call is a no-op). */
export function progress(node, text) {
  const t0 = performance.now();
  node.textContent = text;
  node.classList.add("progress");
  node.dataset.progress = "true";
  const timer = setInterval(() => {
    node.textContent = `${text} ${Math.round((performance.now() - t0) / 1000)} s`;
  }, 1000);
  let done = false;
  return () => {
    if (done) return;
    done = true;
    clearInterval(timer);
    node.classList.remove("progress");
    delete node.dataset.progress;
  };
}
