// "Manage in Stripe" on the billing home (issue 21): the server creates a Stripe Customer Portal session for
// the signed-in customer (POST /v1/portal/stripe-session) and the browser opens it. No card data here.
(function () {
  "use strict";
  const nav = document.getElementById("billing-nav");
  if (!nav) return;
  const button = document.createElement("button");
  button.id = "manage-stripe";
  button.type = "button";
  button.textContent = "Manage in Stripe";
  button.style.marginLeft = "12px";
  const note = document.createElement("span");
  note.id = "manage-stripe-error";
  note.setAttribute("role", "alert");
  note.style.marginLeft = "8px";
  nav.appendChild(button);
  nav.appendChild(note);

  button.addEventListener("click", async () => {
    const token = sessionStorage.getItem("tl_token");
    const headers = { "Accept": "application/json", "Content-Type": "application/json" };
    if (token) headers["Authorization"] = "Bearer " + token;
    button.disabled = true;
    note.textContent = "";
    try {
      const resp = await fetch("/v1/portal/stripe-session", { method: "POST", headers, body: "{}",
                                                             credentials: "same-origin" });
      const data = await resp.json().catch(() => ({}));
      if (!resp.ok || !data.url) throw new Error(data.detail || ("HTTP " + resp.status));
      window.location.assign(data.url);
    } catch (e) {
      note.textContent = e.message;
      button.disabled = false;
    }
  });
})();
