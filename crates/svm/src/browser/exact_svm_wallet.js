// x402 `exact` on Solana networks (an SPL Token / Token-2022 TransferChecked co-signed by the
// facilitator) for tollgate's browser paywall page, signed by the browser's Solana wallet.
//
// It builds the transaction tollgate_svm::ExactSvmClient builds, byte for byte: a v0 message
// whose fee payer is `extra.feePayer`, with SetComputeUnitLimit(20000), SetComputeUnitPrice(1),
// TransferChecked(payer's associated token account -> payTo's, authority = payer) and a Memo
// (`extra.memo`, else 16 random bytes as 32 hex digits); no address lookup tables. The fee
// payer's signature slot stays zeroed for the facilitator; the wallet signs the payer's.
//
// Wallets, in this order:
//  1. Wallet Standard wallets (`wallet-standard:app-ready` / `wallet-standard:register-wallet`
//     events, and the deprecated `window.navigator.wallets` array) with the
//     `solana:signTransaction` feature (and `standard:connect` when no account is shared yet);
//  2. the legacy injected provider, `window.phantom.solana` or `window.solana`, with
//     `connect()` and `signTransaction(transaction)`: it is handed an object shaped like a
//     @solana/web3.js VersionedTransaction (`version`, `signatures`, `message.serialize()`,
//     `serialize()`) and may answer the signed bytes or an object with `serialize()`.
//
// The mint's token program and decimals, and the recent blockhash unless `extra.recentBlockhash`
// is given, are read over Solana JSON-RPC (`getAccountInfo`, `getLatestBlockhash`) at the
// endpoint the seller names: `extra.rpcUrl` of the option, else `window.x402SolanaRpcUrl` (a
// URL for every Solana network, or an object keyed by CAIP-2 network). The page's
// Content-Security-Policy lets it connect to its own origin only, so the endpoint must be a
// path on the seller's server that forwards those two methods to a Solana node.
(function () {
  "use strict";

  var ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
  var TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
  var TOKEN_2022_PROGRAM = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb";
  var ASSOCIATED_TOKEN_PROGRAM = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL";
  var COMPUTE_BUDGET_PROGRAM = "ComputeBudget111111111111111111111111111111";
  var MEMO_PROGRAM = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr";
  var COMPUTE_UNIT_LIMIT = 20000;
  var COMPUTE_UNIT_PRICE = 1n; // micro-lamports per compute unit
  var MAX_MEMO_BYTES = 256;
  var U64_MAX = (1n << 64n) - 1n;
  // Wallet Standard names clusters, x402 names them by CAIP-2 (the genesis hash's prefix).
  var WALLET_CHAINS = {
    "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp": "solana:mainnet",
    "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1": "solana:devnet",
    "solana:4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z": "solana:testnet",
  };

  // --- bytes -------------------------------------------------------------------------------

  function base58Encode(bytes) {
    var digits = []; // base 58, least significant first
    for (var i = 0; i < bytes.length; i++) {
      var carry = bytes[i];
      for (var j = 0; j < digits.length; j++) {
        carry += digits[j] * 256;
        digits[j] = carry % 58;
        carry = Math.floor(carry / 58);
      }
      while (carry > 0) {
        digits.push(carry % 58);
        carry = Math.floor(carry / 58);
      }
    }
    var out = "";
    for (var k = 0; k < bytes.length && bytes[k] === 0; k++) out += "1";
    for (var d = digits.length - 1; d >= 0; d--) out += ALPHABET[digits[d]];
    return out;
  }

  function base58Decode(text) {
    var bytes = []; // base 256, least significant first
    for (var i = 0; i < text.length; i++) {
      var carry = ALPHABET.indexOf(text[i]);
      if (carry < 0) throw new Error("not base58: " + JSON.stringify(text));
      for (var j = 0; j < bytes.length; j++) {
        carry += bytes[j] * 58;
        bytes[j] = carry & 0xff;
        carry >>= 8;
      }
      while (carry > 0) {
        bytes.push(carry & 0xff);
        carry >>= 8;
      }
    }
    for (var k = 0; k < text.length && text[k] === "1"; k++) bytes.push(0);
    return new Uint8Array(bytes.reverse());
  }

  // A 32-byte address (or hash) from its base58 text; `what` names it in the error.
  function address(text, what) {
    var bytes = typeof text === "string" && text.length <= 44 ? safeDecode(text) : null;
    if (!bytes || bytes.length !== 32) {
      throw new Error(what + " " + JSON.stringify(text) + " is not a Solana address");
    }
    return bytes;
  }

  function safeDecode(text) {
    try {
      return base58Decode(text);
    } catch (e) {
      return null;
    }
  }

  function isAddress(text) {
    var bytes = typeof text === "string" && text.length <= 44 ? safeDecode(text) : null;
    return !!bytes && bytes.length === 32;
  }

  function concat(parts) {
    var length = 0;
    for (var i = 0; i < parts.length; i++) length += parts[i].length;
    var out = new Uint8Array(length);
    var at = 0;
    for (var j = 0; j < parts.length; j++) {
      out.set(parts[j], at);
      at += parts[j].length;
    }
    return out;
  }

  function compareBytes(a, b) {
    for (var i = 0; i < a.length && i < b.length; i++) {
      if (a[i] !== b[i]) return a[i] - b[i];
    }
    return a.length - b.length;
  }

  // Solana's short_vec length: 7 bits a byte, least significant first.
  function compactU16(n) {
    if (n < 0 || n > 0xffff) throw new Error("length " + n + " does not fit a compact-u16");
    var out = [];
    do {
      var byte = n & 0x7f;
      n >>= 7;
      out.push(n ? byte | 0x80 : byte);
    } while (n);
    return Uint8Array.from(out);
  }

  function readCompactU16(bytes, at) {
    var value = 0;
    for (var i = 0; i < 3; i++) {
      if (at + i >= bytes.length) throw new Error("truncated transaction");
      var byte = bytes[at + i];
      value |= (byte & 0x7f) << (7 * i);
      if (!(byte & 0x80)) return [value, at + i + 1];
    }
    throw new Error("bad compact-u16 in the transaction");
  }

  function littleEndian(value, size) {
    var out = new Uint8Array(size);
    var v = BigInt(value);
    for (var i = 0; i < size; i++) {
      out[i] = Number(v & 0xffn);
      v >>= 8n;
    }
    return out;
  }

  function base64(bytes) {
    var binary = "";
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary);
  }

  function fromBase64(text) {
    var binary = atob(text);
    var out = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    return out;
  }

  function toBytes(value) {
    if (value instanceof Uint8Array) return value;
    if (value instanceof ArrayBuffer) return new Uint8Array(value);
    if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    if (Array.isArray(value)) return Uint8Array.from(value);
    return null;
  }

  // --- program derived addresses -------------------------------------------------------------

  var P = (1n << 255n) - 19n;
  // Edwards25519's d = -121665 / 121666 mod p.
  var D = 37095705934669439343138083508754565189542113879843219016388785533085940283555n;

  function modPow(base, exponent, modulus) {
    var result = 1n;
    base %= modulus;
    while (exponent > 0n) {
      if (exponent & 1n) result = (result * base) % modulus;
      base = (base * base) % modulus;
      exponent >>= 1n;
    }
    return result;
  }

  // Whether 32 bytes decompress to an ed25519 point, as curve25519-dalek decides (which
  // Solana's `is_on_curve` uses): y is the low 255 bits, little-endian, taken mod p; the point
  // exists when x^2 = (y^2 - 1) / (d y^2 + 1) has a root, i.e. the ratio is 0 or a square.
  function isOnCurve(bytes) {
    var y = 0n;
    for (var i = 31; i >= 0; i--) y = (y << 8n) | BigInt(i === 31 ? bytes[i] & 0x7f : bytes[i]);
    y %= P;
    var yy = (y * y) % P;
    var u = (yy - 1n + P) % P;
    var v = (D * yy + 1n) % P;
    var ratio = (u * modPow(v, P - 2n, P)) % P;
    return ratio === 0n || modPow(ratio, (P - 1n) / 2n, P) === 1n;
  }

  function subtle() {
    if (!window.crypto || !window.crypto.subtle) {
      throw new Error("This page needs a secure context (https, or http on localhost) to pay on Solana.");
    }
    return window.crypto.subtle;
  }

  // `find_program_address`: the first bump from 255 down whose address is off the curve.
  async function findProgramAddress(seeds, programId) {
    var marker = new TextEncoder().encode("ProgramDerivedAddress");
    for (var bump = 255; bump > 0; bump--) {
      var input = concat(seeds.concat([Uint8Array.of(bump), programId, marker]));
      var hash = new Uint8Array(await subtle().digest("SHA-256", input));
      if (!isOnCurve(hash)) return hash;
    }
    throw new Error("no program address for these seeds");
  }

  function associatedTokenAddress(owner, mint, tokenProgram) {
    return findProgramAddress([owner, tokenProgram, mint], base58Decode(ASSOCIATED_TOKEN_PROGRAM));
  }

  // --- the v0 message ------------------------------------------------------------------------

  // An instruction: { programId: bytes, accounts: [{ pubkey, signer, writable }], data }.
  // Accounts are ordered as solana-message's CompiledKeys orders them: the fee payer, then
  // writable signers, readonly signers, writable non-signers, readonly non-signers, each
  // group sorted by the keys' bytes.
  function compileV0(feePayer, instructions, blockhash) {
    var metas = new Map();
    function meta(key) {
      var name = base58Encode(key);
      var found = metas.get(name);
      if (!found) {
        found = { key: key, signer: false, writable: false };
        metas.set(name, found);
      }
      return found;
    }
    instructions.forEach(function (ix) {
      meta(ix.programId);
      ix.accounts.forEach(function (account) {
        var m = meta(account.pubkey);
        m.signer = m.signer || account.signer;
        m.writable = m.writable || account.writable;
      });
    });
    metas.delete(base58Encode(feePayer));
    var rest = Array.from(metas.values()).sort(function (a, b) {
      return compareBytes(a.key, b.key);
    });
    function keysWhere(signer, writable) {
      return rest
        .filter(function (m) {
          return m.signer === signer && m.writable === writable;
        })
        .map(function (m) {
          return m.key;
        });
    }
    var writableSigners = keysWhere(true, true);
    var readonlySigners = keysWhere(true, false);
    var writableOthers = keysWhere(false, true);
    var readonlyOthers = keysWhere(false, false);
    var keys = [feePayer].concat(writableSigners, readonlySigners, writableOthers, readonlyOthers);
    if (keys.length > 256) throw new Error("too many accounts for one transaction");
    var index = new Map();
    keys.forEach(function (key, i) {
      index.set(base58Encode(key), i);
    });
    var header = Uint8Array.of(1 + writableSigners.length + readonlySigners.length,
      readonlySigners.length, readonlyOthers.length);
    var parts = [Uint8Array.of(0x80), header, compactU16(keys.length)].concat(keys);
    parts.push(blockhash, compactU16(instructions.length));
    instructions.forEach(function (ix) {
      parts.push(Uint8Array.of(index.get(base58Encode(ix.programId))));
      parts.push(compactU16(ix.accounts.length));
      parts.push(Uint8Array.from(ix.accounts.map(function (a) {
        return index.get(base58Encode(a.pubkey));
      })));
      parts.push(compactU16(ix.data.length), ix.data);
    });
    parts.push(compactU16(0)); // no address lookup tables
    return { bytes: concat(parts), keys: keys, signers: header[0] };
  }

  // The static account keys and required signatures of a serialized transaction, and where
  // its signatures and message are.
  function parseTransaction(bytes) {
    var read = readCompactU16(bytes, 0);
    var count = read[0];
    var signaturesAt = read[1];
    var messageAt = signaturesAt + 64 * count;
    if (messageAt + 4 > bytes.length) throw new Error("truncated transaction");
    var at = messageAt;
    var versioned = bytes[at] & 0x80;
    if (versioned) at++;
    var required = bytes[at];
    read = readCompactU16(bytes, at + 3);
    var keyCount = read[0];
    at = read[1];
    if (at + 32 * keyCount > bytes.length) throw new Error("truncated transaction");
    var keys = [];
    for (var i = 0; i < keyCount; i++) keys.push(base58Encode(bytes.subarray(at + 32 * i, at + 32 * i + 32)));
    return { signatures: count, signaturesAt: signaturesAt, messageAt: messageAt, required: required, keys: keys };
  }

  function signatureOf(bytes, parsed, signer) {
    var i = parsed.keys.indexOf(signer);
    if (i < 0 || i >= parsed.required || i >= parsed.signatures) return null;
    var at = parsed.signaturesAt + 64 * i;
    return bytes.subarray(at, at + 64);
  }

  // --- Solana JSON-RPC -----------------------------------------------------------------------

  function rpcEndpoint(option) {
    var extra = option.extra || {};
    var configured = typeof extra.rpcUrl === "string" ? extra.rpcUrl : null;
    var global = window.x402SolanaRpcUrl;
    if (!configured && typeof global === "string") configured = global;
    if (!configured && global && typeof global === "object" && typeof global[option.network] === "string") {
      configured = global[option.network];
    }
    if (!configured) {
      throw new Error("The seller named no Solana RPC endpoint for " + option.network +
        " (extra.rpcUrl, or window.x402SolanaRpcUrl), so this page cannot read the token or a recent blockhash.");
    }
    var url;
    try {
      url = new URL(configured, window.location.href);
    } catch (e) {
      throw new Error("The seller's Solana RPC endpoint " + JSON.stringify(configured) + " is not a URL.");
    }
    if (url.origin !== window.location.origin) {
      throw new Error("The seller's Solana RPC endpoint " + url.href + " is not on this page's origin (" +
        window.location.origin + "): the page may only connect to its own server.");
    }
    return url.href;
  }

  async function rpc(endpoint, method, params) {
    var response;
    try {
      response = await fetch(endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: method, params: params }),
        cache: "no-store",
        credentials: "same-origin",
      });
    } catch (e) {
      throw new Error("The Solana RPC endpoint " + endpoint + " cannot be reached: " + ((e && e.message) || e));
    }
    var body = null;
    try {
      body = await response.json();
    } catch (e) { /* reported below */ }
    if (!body || (body.error === undefined && body.result === undefined)) {
      throw new Error("Solana RPC " + method + " answered " + response.status + " without a JSON-RPC result.");
    }
    if (body.error) {
      throw new Error("Solana RPC " + method + " failed: " + (body.error.message || JSON.stringify(body.error)));
    }
    return body.result;
  }

  // The mint's token program and decimals, as ExactSvmClient reads them.
  async function readMint(endpoint, mint) {
    var result = await rpc(endpoint, "getAccountInfo", [mint, { encoding: "base64", commitment: "confirmed" }]);
    var account = result && result.value;
    if (!account) throw new Error("The token " + mint + " does not exist on this network.");
    if (account.owner !== TOKEN_PROGRAM && account.owner !== TOKEN_2022_PROGRAM) {
      throw new Error("The token " + mint + " is owned by " + account.owner + ", not a token program.");
    }
    var data = Array.isArray(account.data) ? fromBase64(account.data[0]) : new Uint8Array(0);
    // The Mint layout: authority (36), supply (8), decimals (1), is_initialized (1), ….
    if (data.length < 82 || data[45] !== 1) throw new Error("The token " + mint + " is not an initialized mint.");
    return { program: account.owner, decimals: data[44] };
  }

  async function recentBlockhash(endpoint, extra) {
    if (typeof extra.recentBlockhash === "string" && isAddress(extra.recentBlockhash)) {
      return base58Decode(extra.recentBlockhash);
    }
    var result = await rpc(endpoint, "getLatestBlockhash", [{ commitment: "confirmed" }]);
    var hash = result && result.value && result.value.blockhash;
    return address(hash, "The node's blockhash");
  }

  // --- wallets -------------------------------------------------------------------------------

  var standardWallets = [];

  function registerStandard() {
    var wallets = Array.prototype.slice.call(arguments);
    wallets.forEach(function (wallet) {
      if (wallet && standardWallets.indexOf(wallet) < 0) standardWallets.push(wallet);
    });
    return function unregister() {
      standardWallets = standardWallets.filter(function (w) {
        return wallets.indexOf(w) < 0;
      });
    };
  }

  // The app side of the Wallet Standard's window-event protocol (what @wallet-standard/app's
  // getWallets does): wallets that load later register through the register-wallet event,
  // wallets already loaded answer app-ready; wallets using the deprecated
  // `window.navigator.wallets` array are read from it too.
  (function listenForWallets() {
    var api = Object.freeze({ register: registerStandard });
    function guard(callback) {
      try {
        callback(api);
      } catch (e) {
        if (window.console) console.error("x402 Solana wallet: a wallet failed to register", e);
      }
    }
    try {
      window.addEventListener("wallet-standard:register-wallet", function (event) {
        if (event && typeof event.detail === "function") guard(event.detail);
      });
      window.dispatchEvent(new CustomEvent("wallet-standard:app-ready", { detail: api }));
    } catch (e) { /* no events: only the legacy provider */ }
    try {
      var pending = window.navigator.wallets || [];
      if (Array.isArray(pending)) {
        var push = function () {
          Array.prototype.forEach.call(arguments, function (callback) {
            if (typeof callback === "function") guard(callback);
          });
        };
        Object.defineProperty(window.navigator, "wallets", { value: Object.freeze({ push: push }) });
        push.apply(null, pending);
      }
    } catch (e) { /* another app already took navigator.wallets */ }
  })();

  function standardWallet(network) {
    var chain = WALLET_CHAINS[network];
    var capable = standardWallets.filter(function (wallet) {
      var feature = wallet.features && wallet.features["solana:signTransaction"];
      if (!feature || typeof feature.signTransaction !== "function") return false;
      var versions = feature.supportedTransactionVersions;
      return !Array.isArray(versions) || versions.indexOf(0) >= 0;
    });
    if (chain) {
      var onChain = capable.filter(function (wallet) {
        return !Array.isArray(wallet.chains) || wallet.chains.indexOf(chain) >= 0;
      });
      if (onChain.length) return { wallet: onChain[0], chain: chain };
      if (capable.length) {
        throw new Error((capable[0].name || "Your wallet") + " does not offer " + chain + ".");
      }
      return null;
    }
    return capable.length ? { wallet: capable[0], chain: null } : null;
  }

  function legacyProvider() {
    var candidates = [window.phantom && window.phantom.solana, window.solana];
    for (var i = 0; i < candidates.length; i++) {
      var p = candidates[i];
      if (p && typeof p.signTransaction === "function" && typeof p.connect === "function") return p;
    }
    return null;
  }

  function keyText(key) {
    if (!key) return null;
    if (typeof key === "string") return key;
    if (typeof key.toBase58 === "function") return key.toBase58();
    var bytes = toBytes(key) || (typeof key.toBytes === "function" ? toBytes(key.toBytes()) : null);
    if (bytes && bytes.length === 32) return base58Encode(bytes);
    return String(key);
  }

  // A signer over one of the supported interfaces: { address, name, sign(bytes) -> bytes }.
  async function connectWallet(network) {
    var found = standardWallet(network);
    if (found) {
      var wallet = found.wallet;
      var accounts = wallet.accounts || [];
      if (!accounts.length && wallet.features["standard:connect"]) {
        var connected = await wallet.features["standard:connect"].connect();
        accounts = (connected && connected.accounts) || wallet.accounts || [];
      }
      var account = accounts.filter(function (a) {
        return !found.chain || !Array.isArray(a.chains) || a.chains.indexOf(found.chain) >= 0;
      })[0];
      if (!account) throw new Error((wallet.name || "Your wallet") + " shared no Solana account.");
      return {
        address: account.address,
        name: wallet.name || "your Solana wallet",
        sign: async function (bytes) {
          var input = { account: account, transaction: bytes };
          if (found.chain) input.chain = found.chain;
          var outputs = await wallet.features["solana:signTransaction"].signTransaction(input);
          var signed = outputs && outputs[0] && toBytes(outputs[0].signedTransaction);
          if (!signed) throw new Error((wallet.name || "Your wallet") + " returned no signed transaction.");
          return signed;
        },
      };
    }
    var provider = legacyProvider();
    if (!provider) {
      throw new Error("No Solana wallet found: install or unlock a Solana wallet " +
        "(a Wallet Standard wallet with solana:signTransaction, or window.solana).");
    }
    var answer = await provider.connect();
    var owner = keyText((answer && answer.publicKey) || provider.publicKey);
    if (!owner) throw new Error("The wallet shared no account.");
    return {
      address: owner,
      name: "your Solana wallet",
      sign: async function (bytes) {
        var parsed = parseTransaction(bytes);
        var message = bytes.subarray(parsed.messageAt);
        var signatures = [];
        for (var i = 0; i < parsed.signatures; i++) {
          signatures.push(bytes.slice(parsed.signaturesAt + 64 * i, parsed.signaturesAt + 64 * i + 64));
        }
        // What @solana/web3.js's VersionedTransaction offers a provider.
        var transaction = {
          version: 0,
          signatures: signatures,
          message: { version: 0, serialize: function () { return message.slice(); } },
          serialize: function () { return bytes.slice(); },
        };
        var signed = await provider.signTransaction(transaction);
        var out = toBytes(signed) || (signed && typeof signed.serialize === "function" ? toBytes(signed.serialize()) : null);
        if (!out) throw new Error("The wallet returned no signed transaction.");
        return out;
      },
    };
  }

  function randomMemo() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    var hex = "";
    for (var i = 0; i < bytes.length; i++) hex += bytes[i].toString(16).padStart(2, "0");
    return hex;
  }

  // --- the payment ---------------------------------------------------------------------------

  async function buildTransaction(option, owner) {
    var extra = option.extra || {};
    var feePayer = address(extra.feePayer, "extra.feePayer");
    var mint = address(option.asset, "The asset");
    var payTo = address(option.payTo, "payTo");
    var payer = address(owner, "The wallet's account");
    if (base58Encode(payer) === base58Encode(feePayer)) {
      throw new Error("The wallet's account is the facilitator's fee payer: pay from another account.");
    }
    var amount;
    try {
      amount = BigInt(String(option.amount));
    } catch (e) {
      throw new Error("The amount " + JSON.stringify(option.amount) + " is not a whole number.");
    }
    if (amount < 0n || amount > U64_MAX) throw new Error("The amount " + amount + " does not fit a token amount.");
    var memo = typeof extra.memo === "string" ? new TextEncoder().encode(extra.memo) : new TextEncoder().encode(randomMemo());
    if (memo.length > MAX_MEMO_BYTES) {
      throw new Error("extra.memo is " + memo.length + " bytes, more than " + MAX_MEMO_BYTES + ".");
    }
    var endpoint = rpcEndpoint(option);
    var token = await readMint(endpoint, option.asset);
    var tokenProgram = base58Decode(token.program);
    var source = await associatedTokenAddress(payer, mint, tokenProgram);
    var destination = await associatedTokenAddress(payTo, mint, tokenProgram);
    var blockhash = await recentBlockhash(endpoint, extra);
    var computeBudget = base58Decode(COMPUTE_BUDGET_PROGRAM);
    var instructions = [
      { programId: computeBudget, accounts: [], data: concat([Uint8Array.of(2), littleEndian(COMPUTE_UNIT_LIMIT, 4)]) },
      { programId: computeBudget, accounts: [], data: concat([Uint8Array.of(3), littleEndian(COMPUTE_UNIT_PRICE, 8)]) },
      {
        programId: tokenProgram,
        accounts: [
          { pubkey: source, signer: false, writable: true },
          { pubkey: mint, signer: false, writable: false },
          { pubkey: destination, signer: false, writable: true },
          { pubkey: payer, signer: true, writable: false },
        ],
        data: concat([Uint8Array.of(12), littleEndian(amount, 8), Uint8Array.of(token.decimals)]),
      },
      { programId: base58Decode(MEMO_PROGRAM), accounts: [], data: memo },
    ];
    var message = compileV0(feePayer, instructions, blockhash);
    // Every required signature slot zeroed: the wallet fills the payer's, the facilitator its own.
    return concat([compactU16(message.signers), new Uint8Array(64 * message.signers), message.bytes]);
  }

  window.x402Wallets = window.x402Wallets || [];
  window.x402Wallets.push({
    name: "your Solana wallet",

    supports: function (option) {
      var extra = option.extra || {};
      return option.scheme === "exact" && /^solana:[1-9A-HJ-NP-Za-km-z]{1,44}$/.test(String(option.network)) &&
        isAddress(option.asset) && isAddress(option.payTo) && isAddress(extra.feePayer);
    },

    pay: async function (paymentRequired, option) {
      rpcEndpoint(option); // fail before asking the wallet when the page cannot build a payment
      var wallet = await connectWallet(option.network);
      var unsigned = await buildTransaction(option, wallet.address);
      var signed = await wallet.sign(unsigned);
      var parsed;
      try {
        parsed = parseTransaction(signed);
      } catch (e) {
        throw new Error(wallet.name + " returned a transaction that does not decode: " + e.message);
      }
      var signature = signatureOf(signed, parsed, wallet.address);
      if (!signature || signature.every(function (b) { return b === 0; })) {
        throw new Error(wallet.name + " did not sign the transaction as " + wallet.address + ".");
      }
      return {
        x402Version: 2,
        resource: paymentRequired.resource,
        accepted: option,
        payload: { transaction: base64(signed) },
      };
    },
  });
})();
