// <creditd-balance token="…">: the live available balance of the account an
// embed token reads, on any page that includes this script. creditd's
// origin is taken from this script's own src; styled by CSS custom
// properties (--creditd-color, --creditd-font, --creditd-size,
// --creditd-weight). Needs nothing installed.
(() => {
  const script = document.currentScript;
  const origin = script ? new URL(script.src, document.baseURI).origin : location.origin;
  const REFRESH_MS = 15000;

  class CreditdBalance extends HTMLElement {
    connectedCallback() {
      if (!this.shadowRoot) {
        const root = this.attachShadow({ mode: "open" });
        const style = document.createElement("style");
        style.textContent =
          ":host{display:inline-block;color:var(--creditd-color,inherit);" +
          "font-family:var(--creditd-font,inherit);font-size:var(--creditd-size,inherit);" +
          "font-weight:var(--creditd-weight,inherit)}";
        this.value = document.createElement("span");
        this.value.setAttribute("part", "value");
        this.value.setAttribute("aria-live", "polite");
        this.value.textContent = "…";
        root.append(style, this.value);
      }
      this.refresh();
      this.timer = setInterval(() => this.refresh(), REFRESH_MS);
    }

    disconnectedCallback() {
      clearInterval(this.timer);
    }

    async refresh() {
      const token = this.getAttribute("token");
      if (!token) return;
      try {
        const answer = await fetch(origin + "/v1/embed/balance/" + encodeURIComponent(token), {
          credentials: "omit",
        });
        if (!answer.ok) {
          this.value.textContent = "—";
          this.dispatchEvent(new CustomEvent("creditd-error", { detail: answer.status }));
          return;
        }
        const body = await answer.json();
        const figure = Number(body.available);
        this.value.textContent = Number.isFinite(figure)
          ? figure.toLocaleString(undefined, { maximumFractionDigits: 2 })
          : body.available;
        this.setAttribute("data-available", body.available);
      } catch (error) {
        this.value.textContent = "—";
      }
    }
  }

  if (!customElements.get("creditd-balance")) {
    customElements.define("creditd-balance", CreditdBalance);
  }
})();
