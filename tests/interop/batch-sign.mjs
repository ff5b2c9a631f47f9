// Signs batch-settlement payloads with the official client code (@x402/evm's batch-settlement
// client: computeChannelId, the EIP-3009 deposit payload, signVoucher) without sending them, so
// crates/evm/tests/batch_settlement_chain.rs can check that Tollgate reads them, that its own
// digests agree, and that our x402BatchSettlement contract accepts them on chain.
//
// Env: X402_REQUIREMENTS (PaymentRequirements JSON of a batch-settlement offer),
// X402_PAYER_KEY, X402_SALT (the channel salt, 0x + 64 hex), X402_DEPOSIT (atomic units),
// X402_VOUCHERS (a JSON array of cumulative ceilings: the first goes with the deposit, the others
// are signed as plain vouchers).
// Prints one JSON line: {channelId, config, deposit, vouchers}.
import { privateKeyToAccount } from "viem/accounts";
import { getAddress } from "viem";
import {
  computeChannelId,
  createBatchSettlementEIP3009DepositPayload,
  signVoucher,
} from "@x402/evm/batch-settlement/client";
import { need } from "./common.mjs";

const requirements = JSON.parse(need("X402_REQUIREMENTS"));
const account = privateKeyToAccount(need("X402_PAYER_KEY"));
const ceilings = JSON.parse(need("X402_VOUCHERS"));
const config = {
  payer: account.address,
  payerAuthorizer: account.address,
  receiver: getAddress(requirements.payTo),
  receiverAuthorizer: getAddress(requirements.extra.receiverAuthorizer),
  token: getAddress(requirements.asset),
  withdrawDelay: requirements.extra.withdrawDelay,
  salt: need("X402_SALT"),
};
const channelId = computeChannelId(config, requirements.network);
const deposit = await createBatchSettlementEIP3009DepositPayload(
  account,
  2,
  requirements,
  config,
  need("X402_DEPOSIT"),
  String(ceilings[0]),
);
const vouchers = [];
for (const ceiling of ceilings.slice(1)) {
  vouchers.push(await signVoucher(account, channelId, String(ceiling), requirements.network));
}
console.log(JSON.stringify({ channelId, config, deposit: deposit.payload, vouchers }));
