// The official MCP client (@modelcontextprotocol/sdk) paying a tool over x402's MCP transport
// (specs/transports-v2/mcp.md), with the official x402 client (x402Client + @x402/evm exact)
// signing: call the tool, read the PaymentRequired from the error result's structuredContent
// (falling back to content[0].text), sign it, call again with `_meta["x402/payment"]`, and
// read the receipt from the result's `_meta["x402/payment-response"]`. Prints one JSON line:
// {unpaid, paid, paymentRequired, paymentPayload, paymentResponse, error?}.
//
// Env: X402_MCP_URL (streamable HTTP endpoint), X402_TOOL, X402_TOOL_ARGS (JSON object),
// X402_RPC_URL, X402_CHAIN_ID, X402_PAYER_KEY.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { privateKeyToAccount } from "viem/accounts";
import { createPublicClient, http } from "viem";
import { x402Client } from "@x402/core/client";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { toClientEvmSigner } from "@x402/evm";
import { caip2, localChain, need } from "./common.mjs";

const PAYMENT_META_KEY = "x402/payment";
const PAYMENT_RESPONSE_META_KEY = "x402/payment-response";

const account = privateKeyToAccount(need("X402_PAYER_KEY"));
const publicClient = createPublicClient({ chain: localChain(), transport: http(need("X402_RPC_URL")) });
const payer = new x402Client()
  .register(caip2(), new ExactEvmScheme(toClientEvmSigner(account, publicClient)))
  .setSpendControls({ allowedAssets: true });

/** The PaymentRequired of an error result, as the spec tells clients to look for it. */
function paymentRequired(result) {
  if (!result.isError) return null;
  const isChallenge = (v) => v && typeof v === "object" && "x402Version" in v && Array.isArray(v.accepts) && v.accepts.length > 0;
  if (isChallenge(result.structuredContent)) return result.structuredContent;
  const first = result.content?.[0];
  if (first?.type === "text") {
    try {
      const parsed = JSON.parse(first.text);
      if (isChallenge(parsed)) return parsed;
    } catch {}
  }
  return null;
}

const client = new Client({ name: "x402-interop", version: "1.0.0" });
const out = { unpaid: null, paid: null, paymentRequired: null, paymentPayload: null, paymentResponse: null };
try {
  await client.connect(new StreamableHTTPClientTransport(new URL(need("X402_MCP_URL"))));
  const name = need("X402_TOOL");
  const args = JSON.parse(process.env.X402_TOOL_ARGS ?? "{}");
  const unpaid = await client.callTool({ name, arguments: args });
  out.unpaid = unpaid;
  out.paymentRequired = paymentRequired(unpaid);
  if (!out.paymentRequired) throw new Error("the tool did not ask for payment");
  out.paymentPayload = await payer.createPaymentPayload(out.paymentRequired);
  const paid = await client.callTool({ name, arguments: args, _meta: { [PAYMENT_META_KEY]: out.paymentPayload } });
  out.paid = paid;
  out.paymentResponse = paid._meta?.[PAYMENT_RESPONSE_META_KEY] ?? null;
  console.log(JSON.stringify(out));
} catch (error) {
  console.log(JSON.stringify({ ...out, error: String(error?.message ?? error) }));
  process.exitCode = 1;
} finally {
  await client.close().catch(() => {});
}
