// x402 `exact` on EVM networks (EIP-3009 transferWithAuthorization) for tollgate's browser
// paywall page, signed by the browser's injected EIP-1193 wallet (`window.ethereum`).
// Builds the same payment as tollgate_evm::ExactEvmClient: validAfter 600 s in the past,
// validBefore maxTimeoutSeconds ahead, a random 32-byte nonce, amounts as decimal strings.
(function () {
  "use strict";

  function chainIdOf(network) {
    var match = /^eip155:([0-9]+)$/.exec(String(network));
    return match ? BigInt(match[1]) : null;
  }

  function randomNonce() {
    var bytes = new Uint8Array(32);
    crypto.getRandomValues(bytes);
    var hex = "0x";
    for (var i = 0; i < bytes.length; i++) hex += bytes[i].toString(16).padStart(2, "0");
    return hex;
  }

  function provider() {
    var ethereum = window.ethereum;
    if (!ethereum || typeof ethereum.request !== "function") {
      throw new Error("No browser wallet found: install or unlock an Ethereum wallet (window.ethereum).");
    }
    return ethereum;
  }

  async function ensureChain(ethereum, chainId) {
    var current = BigInt(await ethereum.request({ method: "eth_chainId" }));
    if (current === chainId) return;
    var hex = "0x" + chainId.toString(16);
    try {
      await ethereum.request({ method: "wallet_switchEthereumChain", params: [{ chainId: hex }] });
    } catch (e) {
      throw new Error("Switch your wallet to chain " + chainId + " (it is on " + current + "): " +
        ((e && e.message) || e));
    }
    current = BigInt(await ethereum.request({ method: "eth_chainId" }));
    if (current !== chainId) {
      throw new Error("Your wallet is on chain " + current + ", this payment is on chain " + chainId + ".");
    }
  }

  window.x402Wallets = window.x402Wallets || [];
  window.x402Wallets.push({
    name: "your Ethereum wallet (EIP-3009 authorization)",

    supports: function (option) {
      return option.scheme === "exact" && chainIdOf(option.network) !== null &&
        /^0x[0-9a-fA-F]{40}$/.test(option.asset) && /^0x[0-9a-fA-F]{40}$/.test(option.payTo);
    },

    pay: async function (paymentRequired, option) {
      var extra = option.extra || {};
      if (typeof extra.name !== "string" || typeof extra.version !== "string") {
        throw new Error("The seller did not name the token's signing domain (extra.name, extra.version).");
      }
      var chainId = chainIdOf(option.network);
      var ethereum = provider();
      var accounts = await ethereum.request({ method: "eth_requestAccounts" });
      if (!accounts || !accounts.length) throw new Error("The wallet shared no account.");
      var from = accounts[0];
      await ensureChain(ethereum, chainId);

      var now = Math.floor(Date.now() / 1000);
      var authorization = {
        from: from,
        to: option.payTo,
        value: String(option.amount),
        validAfter: String(Math.max(0, now - 600)),
        validBefore: String(now + Math.max(1, Number(option.maxTimeoutSeconds) || 0)),
        nonce: randomNonce(),
      };
      var typedData = {
        types: {
          EIP712Domain: [
            { name: "name", type: "string" },
            { name: "version", type: "string" },
            { name: "chainId", type: "uint256" },
            { name: "verifyingContract", type: "address" },
          ],
          TransferWithAuthorization: [
            { name: "from", type: "address" },
            { name: "to", type: "address" },
            { name: "value", type: "uint256" },
            { name: "validAfter", type: "uint256" },
            { name: "validBefore", type: "uint256" },
            { name: "nonce", type: "bytes32" },
          ],
        },
        primaryType: "TransferWithAuthorization",
        domain: {
          name: extra.name,
          version: extra.version,
          chainId: Number(chainId),
          verifyingContract: option.asset,
        },
        message: authorization,
      };
      var signature = await ethereum.request({
        method: "eth_signTypedData_v4",
        params: [from, JSON.stringify(typedData)],
      });
      return {
        x402Version: 2,
        resource: paymentRequired.resource,
        accepted: option,
        payload: { signature: signature, authorization: authorization },
      };
    },
  });
})();
