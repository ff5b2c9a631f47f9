// An MCP server built on the official MCP SDK (@modelcontextprotocol/sdk: the low-level
// `Server` over its streamable HTTP transport, stateless) whose paid tool takes x402 payments
// through the official resource server (@x402/core x402ResourceServer + HTTPFacilitatorClient,
// @x402/evm exact server scheme), following x402's MCP transport (specs/transports-v2/mcp.md)
// as the official Python SDK's `x402.mcp` payment wrapper implements it: an unpaid call gets an
// error result with the PaymentRequired as `structuredContent` and as `content[0].text`; a
// call with `_meta["x402/payment"]` is matched, verified, run, settled, and answered with
// `_meta["x402/payment-response"]`; a failed settlement withholds the output.
//
// Tools: `echo` (free) and `forecast` (paid, `{city}` → "<city>: cloudy").
// Env: X402_CHAIN_ID, X402_FACILITATOR_URL, X402_PAY_TO, X402_ASSET, X402_TOKEN_NAME,
// X402_TOKEN_VERSION, X402_PRICE (atomic units), X402_PORT. Prints `ready mcp-server <port>`.
// `GET /handler-runs` answers `{"runs": n}`, how many times the paid tool ran.
import express from "express";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { HTTPFacilitatorClient, x402ResourceServer } from "@x402/core/server";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import { caip2, listen, need } from "./common.mjs";

const PAYMENT_META_KEY = "x402/payment";
const PAYMENT_RESPONSE_META_KEY = "x402/payment-response";

const network = caip2();
const resourceServer = new x402ResourceServer(
  new HTTPFacilitatorClient({ url: need("X402_FACILITATOR_URL") }),
).register(network, new ExactEvmScheme());
await resourceServer.initialize();
const accepts = await resourceServer.buildPaymentRequirements({
  scheme: "exact",
  network,
  payTo: need("X402_PAY_TO"),
  price: {
    amount: need("X402_PRICE"),
    asset: need("X402_ASSET"),
    extra: { name: need("X402_TOKEN_NAME"), version: need("X402_TOKEN_VERSION") },
  },
  maxTimeoutSeconds: 60,
});
const resource = { url: "mcp://tool/forecast", description: "Tool: forecast", mimeType: "application/json" };
let handlerRuns = 0;

async function paymentRequired(error) {
  const required = await resourceServer.createPaymentRequiredResponse(accepts, resource, error);
  return { isError: true, structuredContent: required, content: [{ type: "text", text: JSON.stringify(required) }] };
}

async function forecast(args, meta) {
  const payment = meta?.[PAYMENT_META_KEY];
  if (!payment) return paymentRequired("Payment required to access this tool");
  const requirements = resourceServer.findMatchingRequirements(accepts, payment);
  if (!requirements) return paymentRequired("No matching payment requirements found");
  const verified = await resourceServer.verifyPayment(payment, requirements);
  if (!verified.isValid) return paymentRequired(verified.invalidReason ?? "Payment verification failed");
  handlerRuns += 1;
  const output = { content: [{ type: "text", text: `${args?.city ?? "?"}: cloudy` }] };
  const settled = await resourceServer.settlePayment(payment, requirements);
  if (!settled.success) {
    return paymentRequired(`Payment settlement failed: ${settled.errorReason ?? "unknown"}`);
  }
  return { ...output, _meta: { [PAYMENT_RESPONSE_META_KEY]: settled } };
}

function mcpServer() {
  const server = new Server({ name: "x402-interop-mcp", version: "1.0.0" }, { capabilities: { tools: {} } });
  const city = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };
  server.setRequestHandler(ListToolsRequestSchema, async () => ({
    tools: [
      { name: "echo", description: "Echo a city (free)", inputSchema: city },
      { name: "forecast", description: "Forecast for a city (paid)", inputSchema: city },
    ],
  }));
  server.setRequestHandler(CallToolRequestSchema, async (request) => {
    const { name, arguments: args, _meta } = request.params;
    if (name === "echo") return { content: [{ type: "text", text: String(args?.city ?? "") }] };
    if (name === "forecast") return forecast(args, _meta);
    return { isError: true, content: [{ type: "text", text: `unknown tool ${name}` }] };
  });
  return server;
}

const app = express();
app.use(express.json());
app.get("/handler-runs", (_req, res) => res.json({ runs: handlerRuns }));
app.post("/mcp", async (req, res) => {
  // Stateless: one server and transport per request, as the SDK documents it.
  const server = mcpServer();
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
  res.on("close", () => {
    transport.close();
    server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(req, res, req.body);
});
app.all("/mcp", (_req, res) => res.status(405).set("Allow", "POST").end());
listen(app, "mcp-server");
