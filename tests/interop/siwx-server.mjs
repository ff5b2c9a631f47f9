// The official resource server with sign-in-with-x: express with @x402/express's payment
// middleware and @x402/extensions' `createSIWxResourceServerExtension` (in-memory storage), in
// front of `GET /paid` (priced; a wallet that paid signs in to it again) and `GET /members`
// (auth-only: `accepts: []`; in 2.27.0 its 402 names no chain to sign in with, see
// crates/cli/tests/interop_siwx.rs). Each SIWX hook event is
// printed on stderr as `siwx {json}`.
//
// Env: X402_CHAIN_ID, X402_FACILITATOR_URL, X402_PAY_TO, X402_ASSET, X402_TOKEN_NAME,
// X402_TOKEN_VERSION, X402_PRICE (atomic units), X402_PORT (fixed: the SIWX origin is
// http://127.0.0.1:X402_PORT).
import express from "express";
import { paymentMiddleware } from "@x402/express";
import { HTTPFacilitatorClient, x402ResourceServer } from "@x402/core/server";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import {
  InMemorySIWxStorage,
  SIGN_IN_WITH_X,
  createSIWxResourceServerExtension,
  declareSIWxExtension,
} from "@x402/extensions/sign-in-with-x";
import { caip2, listen, need } from "./common.mjs";

const network = caip2();
const origin = `http://127.0.0.1:${need("X402_PORT")}`;
const facilitatorClient = new HTTPFacilitatorClient({ url: need("X402_FACILITATOR_URL") });
const resourceServer = new x402ResourceServer(facilitatorClient)
  .register(network, new ExactEvmScheme())
  .registerExtension(
    createSIWxResourceServerExtension({
      origin,
      storage: new InMemorySIWxStorage(),
      onEvent: (event) => console.error(`siwx ${JSON.stringify(event)}`),
    }),
  );

const siwx = { [SIGN_IN_WITH_X]: declareSIWxExtension({ network, statement: "Sign in", expirationSeconds: 300 }) };
const routes = {
  "GET /paid": {
    accepts: {
      scheme: "exact",
      network,
      payTo: need("X402_PAY_TO"),
      price: {
        amount: need("X402_PRICE"),
        asset: need("X402_ASSET"),
        extra: { name: need("X402_TOKEN_NAME"), version: need("X402_TOKEN_VERSION") },
      },
      maxTimeoutSeconds: 60,
    },
    description: "interop resource",
    mimeType: "text/plain",
    extensions: siwx,
  },
  "GET /members": {
    accepts: [],
    description: "members only",
    mimeType: "text/plain",
    extensions: siwx,
  },
};

const app = express();
app.use(paymentMiddleware(routes, resourceServer));
app.get("/paid", (_req, res) => res.type("text/plain").send("interop paid body"));
app.get("/members", (_req, res) => res.type("text/plain").send("members only"));
listen(app, "server");
