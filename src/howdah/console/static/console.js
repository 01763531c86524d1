// Howdah console: the little the pages need besides HTML. Written for this console; no dependencies.
// - An element with data-poll="URL" has its content replaced, every few seconds, by the HTML the server renders
//   at URL (one request for the whole table, whatever its size). A lost session goes back to the sign-in page.
// - A button with data-copy="ID" copies the value of the element with that id.

const POLL_MS = 2000;

function poll(element) {
  const url = element.dataset.poll;
  let busy = false;
  const refresh = async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (response.redirected && new URL(response.url).pathname === "/sign-in") {
        window.location.assign(response.url);
        return;
      }
      if (response.ok) element.innerHTML = await response.text();
    } catch (_) {
      // the server is restarting or unreachable: the next tick tries again
    } finally {
      busy = false;
    }
  };
  window.setInterval(refresh, POLL_MS);
}

function copy(button) {
  button.addEventListener("click", async () => {
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    source.select();
    try {
      await navigator.clipboard.writeText(source.value);
      button.textContent = "Copied";
    } catch (_) {
      button.textContent = "Selected: press Ctrl+C";
    }
  });
}

document.querySelectorAll("[data-poll]").forEach(poll);
document.querySelectorAll("[data-copy]").forEach(copy);
