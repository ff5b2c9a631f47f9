// The x402 paywall page's own script (served inline by tollgate-server's browser paywall).
// It knows no chain: wallet scripts registered in `window.x402Wallets` sign; this script picks
// the option, asks the wallet, sends the payment in PAYMENT-SIGNATURE and shows the result.
(function () {
  "use strict";
  var root = document.getElementById("x402-paywall");
  var payButton = document.getElementById("x402-pay");
  var statusLine = document.getElementById("x402-status");
  var output = document.getElementById("x402-output");
  var paymentRequired = JSON.parse(document.getElementById("x402-payment-required").textContent);
  var method = root.getAttribute("data-method") || "GET";
  var wallets = window.x402Wallets || [];

  function setStatus(text, isError) {
    statusLine.textContent = text;
    statusLine.className = isError ? "error" : "";
  }

  // Base64 of the UTF-8 bytes (btoa alone only takes Latin-1).
  function base64Json(value) {
    var bytes = new TextEncoder().encode(JSON.stringify(value));
    var binary = "";
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary);
  }

  function fromBase64Json(text) {
    var binary = atob(text.trim());
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return JSON.parse(new TextDecoder().decode(bytes));
  }

  function walletFor(option) {
    for (var i = 0; i < wallets.length; i++) {
      try {
        if (wallets[i].supports(option)) return wallets[i];
      } catch (e) { /* a wallet that cannot judge an option does not support it */ }
    }
    return null;
  }

  function selectedIndex() {
    var checked = document.querySelector('input[name="x402-option"]:checked');
    return checked ? Number(checked.value) : 0;
  }

  function refreshButton() {
    var option = paymentRequired.accepts[selectedIndex()];
    var wallet = option && walletFor(option);
    payButton.disabled = !wallet;
    if (wallet) {
      setStatus("Pay with " + (wallet.name || "your wallet") + ".", false);
    } else {
      setStatus("This page cannot pay the selected option in this browser.", true);
    }
  }

  function errorText(e) {
    if (!e) return "unknown error";
    if (typeof e === "string") return e;
    return e.message || (e.error && e.error.message) || JSON.stringify(e);
  }

  // Why the server refused: the v2 challenge's `error`, else a JSON body's `error`.
  async function refusal(response) {
    var header = response.headers.get("PAYMENT-REQUIRED");
    if (header) {
      try {
        var challenge = fromBase64Json(header);
        if (challenge && challenge.error) return challenge.error;
      } catch (e) { /* fall through to the body */ }
    }
    var text = await response.text();
    try {
      var body = JSON.parse(text);
      if (body && body.error) return body.detail ? body.error + ": " + body.detail : body.error;
    } catch (e) { /* not JSON */ }
    return text || response.status + " " + response.statusText;
  }

  function show(contentType, text) {
    output.textContent = "";
    if (/^text\/html\b/i.test(contentType)) {
      // The resource's HTML, isolated from this page (no scripts, no access to it).
      var frame = document.createElement("iframe");
      frame.setAttribute("sandbox", "");
      frame.setAttribute("title", "Purchased content");
      frame.srcdoc = text;
      output.appendChild(frame);
    } else {
      var pre = document.createElement("pre");
      pre.id = "x402-content";
      pre.textContent = text;
      output.appendChild(pre);
    }
    output.hidden = false;
  }

  async function pay() {
    var option = paymentRequired.accepts[selectedIndex()];
    var wallet = walletFor(option);
    if (!wallet) return;
    payButton.disabled = true;
    try {
      setStatus("Waiting for your wallet to sign…", false);
      var payment = await wallet.pay(paymentRequired, option);
      setStatus("Paying…", false);
      var response = await fetch(window.location.href, {
        method: method,
        headers: { "PAYMENT-SIGNATURE": base64Json(payment) },
        cache: "no-store",
        credentials: "same-origin",
      });
      if (response.status === 402) {
        setStatus("Payment refused: " + (await refusal(response)), true);
        payButton.disabled = false;
        return;
      }
      if (!response.ok) {
        setStatus("The server answered " + response.status + ": " + (await refusal(response)), true);
        payButton.disabled = false;
        return;
      }
      var receipt = response.headers.get("PAYMENT-RESPONSE");
      var transaction = "";
      if (receipt) {
        try { transaction = fromBase64Json(receipt).transaction || ""; } catch (e) { /* no receipt */ }
      }
      show(response.headers.get("Content-Type") || "", await response.text());
      document.getElementById("x402-options").hidden = true;
      setStatus(transaction ? "Paid. Transaction " + transaction : "Paid.", false);
      root.setAttribute("data-paid", transaction || "true");
    } catch (e) {
      setStatus("Payment failed: " + errorText(e), true);
      payButton.disabled = false;
    }
  }

  document.getElementById("x402-options").addEventListener("change", refreshButton);
  payButton.addEventListener("click", pay);
  refreshButton();
})();
