// The first-visit guide: four lines on what to try, shown once and remembered in
// localStorage. Browsers driven by tests (`navigator.webdriver`) never see it unless the
// URL asks for it with `?guide=1`; `?guide=0` hides it for anyone.
import { $ } from "./dom.js";

const KEY = "cnnscope.guide";

/** Show the guide if this visitor has not seen it (or the URL asks); wire its buttons. */
export function initGuide() {
  const dialog = $("guide");
  dialog.addEventListener("close", () => {
    try { localStorage.setItem(KEY, "seen"); } catch { /* private mode: shown again next time */ }
  });
  $("guide-open").onclick = () => dialog.showModal();
  const asked = new URLSearchParams(location.search).get("guide");
  let seen = false;
  try { seen = localStorage.getItem(KEY) === "seen"; } catch { seen = false; }
  const show = asked === "1" || (asked !== "0" && !seen && !navigator.webdriver);
  if (show) dialog.showModal();
}
