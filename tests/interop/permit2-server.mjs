// The official x402 resource server for the Permit2 rows (crates/cli/tests/interop_permit2.rs):
// express with @x402/express's payment middleware, pointed at a facilitator URL, selling
//
// - `GET /exact`: `exact` with `extra.assetTransferMethod: "permit2"` (a token without
//   EIP-3009, paid through Permit2 and x402ExactPermit2Proxy), X402_PRICE atomic units;
// - `GET /upto`: `upto` (Permit2 through x402UptoPermit2Proxy), at most X402_MAX atomic units;
//   the handler charges X402_CHARGE with @x402/express's `setSettlementOverrides`, the way the
//   SDK documents a metered charge.
//
// Env: X402_CHAIN_ID, X402_FACILITATOR_URL, X402_PAY_TO, X402_ASSET, X402_PRICE, X402_MAX,
// X402_CHARGE, X402_BODY, X402_PORT.
import express from "express";
import { paymentMiddleware, setSettlementOverrides } from "@x402/express";
import { HTTPFacilitatorClient, x402ResourceServer } from "@x402/core/server";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import { UptoEvmScheme } from "@x402/evm/upto/server";
import { caip2, listen, need } from "./common.mjs";

const network = caip2();
const facilitatorClient = new HTTPFacilitatorClient({ url: need("X402_FACILITATOR_URL") });
const resourceServer = new x402ResourceServer(facilitatorClient)
  .register(network, new ExactEvmScheme())
  .register(network, new UptoEvmScheme());

const payTo = need("X402_PAY_TO");
const asset = need("X402_ASSET");
const routes = {
  "GET /exact": {
    accepts: {
      scheme: "exact",
      network,
      payTo,
      price: { amount: need("X402_PRICE"), asset, extra: { assetTransferMethod: "permit2" } },
      maxTimeoutSeconds: 60,
    },
    description: "interop resource (exact, Permit2)",
    mimeType: "text/plain",
  },
  "GET /upto": {
    accepts: {
      scheme: "upto",
      network,
      payTo,
      price: { amount: need("X402_MAX"), asset, extra: {} },
      maxTimeoutSeconds: 60,
    },
    description: "interop resource (upto, metered)",
    mimeType: "text/plain",
  },
};

const app = express();
app.use(paymentMiddleware(routes, resourceServer));
const body = need("X402_BODY");
app.get("/exact", (_req, res) => {
  res.type("text/plain").send(body);
});
app.get("/upto", (_req, res) => {
  setSettlementOverrides(res, { amount: need("X402_CHARGE") });
  res.type("text/plain").send(body);
});

listen(app, "server");
