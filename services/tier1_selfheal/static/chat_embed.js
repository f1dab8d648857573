/* tierline chat widget, embedded with one script tag:
 *   <script src="https://billing.example.com/chat/embed.js" data-token="SESSION_TOKEN" async></script>
 * Optional: data-target="#css-selector" to place the chat inside an element (else a panel at the bottom right).
 * The session token is the customer's (as for the Billing Health Meter); it goes to the frame in the URL
 * fragment, which never reaches a server or a Referer header. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var origin = new URL(script.src, location.href).origin;
  var token = script.getAttribute("data-token") || "";
  var frame = document.createElement("iframe");
  frame.src = origin + "/chat" + (token ? "#token=" + encodeURIComponent(token) : "");
  frame.title = "Billing support chat";
  frame.setAttribute("referrerpolicy", "no-referrer");
  frame.style.border = "1px solid #e3e7ee";
  frame.style.borderRadius = "12px";
  frame.style.background = "#fff";
  var selector = script.getAttribute("data-target");
  var target = selector ? document.querySelector(selector) : null;
  if (target) {
    frame.style.width = "100%";
    frame.style.height = "100%";
    target.appendChild(frame);
  } else {
    frame.style.position = "fixed";
    frame.style.right = "16px";
    frame.style.bottom = "16px";
    frame.style.width = "380px";
    frame.style.height = "560px";
    frame.style.maxWidth = "calc(100vw - 32px)";
    frame.style.maxHeight = "calc(100vh - 32px)";
    frame.style.boxShadow = "0 8px 28px rgba(0,0,0,.18)";
    frame.style.zIndex = "2147483000";
    document.body.appendChild(frame);
  }
})();
