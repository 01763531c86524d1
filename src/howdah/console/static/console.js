// Howdah console: the little the pages need besides HTML. Written for this console; no dependencies.
// - An element with data-poll="URL" has its content replaced, every few seconds, by the HTML the server renders
//   at URL (one request for the whole table, whatever its size). When that HTML holds elements marked
//   data-part="ID", each replaces instead the content of the page's element with that id (one request
//   refreshes several places). A lost session goes back to the sign-in page.
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
      if (response.ok) place(element, await response.text());
    } catch (_) {
      // the server is restarting or unreachable: the next tick tries again
    } finally {
      busy = false;
    }
  };
  window.setInterval(refresh, POLL_MS);
}

function place(element, html) {
  const fragment = document.createElement("template");
  fragment.innerHTML = html;
  const parts = fragment.content.querySelectorAll("[data-part]");
  if (parts.length === 0) {
    element.replaceChildren(fragment.content);
    return;
  }
  parts.forEach((part) => {
    const target = document.getElementById(part.dataset.part);
    if (target) target.replaceChildren(...part.childNodes);
  });
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
