//! The `x402BatchSettlement` contract's ABI (as the official SDK calls it) and the EIP-712
//! types of the scheme, as alloy bindings. One `sol!` block, so the ABI structs and the EIP-712
//! structs are the same Rust types: a [`ChannelConfig`] hashes to its channel id with
//! `eip712_signing_hash` and goes into a `deposit` call unchanged.

use alloy::sol;

// The generated bindings mirror Solidity signatures, which take more arguments than clippy likes.
#[allow(clippy::too_many_arguments)]
mod bindings {
    use super::sol;

    sol! {
        #![sol(all_derives)]
        /// A channel's immutable parameters; their EIP-712 hash under the
        /// `x402 Batch Settlement` domain is the channel id.
        struct ChannelConfig {
            address payer;
            address payerAuthorizer;
            address receiver;
            address receiverAuthorizer;
            address token;
            uint40 withdrawDelay;
            bytes32 salt;
        }

        /// What the payer signs per request: the channel and the cumulative ceiling.
        struct Voucher {
            bytes32 channelId;
            uint128 maxClaimableAmount;
        }

        /// What the receiver authorizer signs for `refundWithSignature`.
        struct Refund {
            bytes32 channelId;
            uint256 nonce;
            uint128 amount;
        }

        /// One row of a signed claim batch.
        struct ClaimEntry {
            bytes32 channelId;
            uint128 maxClaimableAmount;
            uint128 totalClaimed;
        }

        /// What the receiver authorizer signs for `claimWithSignature`.
        struct ClaimBatch {
            ClaimEntry[] claims;
        }

        /// EIP-3009's `ReceiveWithAuthorization`, signed under the token's domain with the
        /// ERC-3009 deposit collector as `to`.
        struct ReceiveWithAuthorization {
            address from;
            address to;
            uint256 value;
            uint256 validAfter;
            uint256 validBefore;
            bytes32 nonce;
        }

        /// Permit2's `TokenPermissions`.
        struct TokenPermissions {
            address token;
            uint256 amount;
        }

        /// The Permit2 deposit's witness: the channel the deposit funds.
        struct DepositWitness {
            bytes32 channelId;
        }

        /// What a Permit2 depositor signs (Permit2's domain), with the Permit2 deposit
        /// collector as `spender`.
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted;
            address spender;
            uint256 nonce;
            uint256 deadline;
            DepositWitness witness;
        }

        /// The contract's `Voucher` argument: the full config rather than its id, so the
        /// contract can check the signer against it.
        struct ClaimVoucher {
            ChannelConfig channel;
            uint128 maxClaimableAmount;
        }

        /// One channel's row of a claim: the voucher, its signature and the cumulative amount
        /// claimed under it.
        struct VoucherClaim {
            ClaimVoucher voucher;
            bytes signature;
            uint128 totalClaimed;
        }

        /// `x402BatchSettlement` (canonical address `0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003`).
        #[sol(rpc)]
        interface IBatchSettlement {
            event ChannelCreated(bytes32 indexed channelId, ChannelConfig config);
            event ChannelClosed(bytes32 indexed channelId, ChannelConfig config);
            event Deposited(bytes32 indexed channelId, address indexed sender, uint128 amount, uint128 newBalance);
            event Claimed(bytes32 indexed channelId, address indexed sender, uint128 claimAmount, uint128 newTotalClaimed);
            event Settled(address indexed receiver, address indexed token, address indexed sender, uint128 amount);
            event Refunded(bytes32 indexed channelId, address indexed sender, uint128 amount);
            event WithdrawInitiated(bytes32 indexed channelId, uint128 amount, uint40 finalizeAfter);
            event WithdrawFinalized(bytes32 indexed channelId, address indexed sender, uint128 amount);

            error InvalidChannel();
            error ZeroDeposit();
            error DepositOverflow();
            error InvalidSignature();
            error NotReceiverAuthorizer();
            error NotAuthorizedToClaim();
            error NotAuthorizedToRefund();
            error ClaimExceedsCeiling();
            error ClaimExceedsBalance();
            error WithdrawalAlreadyPending();
            error WithdrawalNotPending();
            error NotAuthorizedToFinalizeWithdraw();
            error WithdrawDelayNotElapsed();
            error NothingToWithdraw();
            error WithdrawAmountExceedsAvailable();
            error WithdrawDelayOutOfRange();
            error EmptyBatch();
            error DepositCollectionFailed();
            error InvalidCollector();
            error InvalidRefundNonce();
            error ZeroRefund();
            error TransferFailed();

            function multicall(bytes[] data) external returns (bytes[] results);
            function deposit(ChannelConfig config, uint128 amount, address collector, bytes collectorData) external;
            function claim(VoucherClaim[] voucherClaims) external;
            function claimWithSignature(VoucherClaim[] voucherClaims, bytes authorizerSignature) external;
            function settle(address receiver, address token) external;
            function initiateWithdraw(ChannelConfig config, uint128 amount) external;
            function finalizeWithdraw(ChannelConfig config) external;
            function refund(ChannelConfig config, uint128 amount) external;
            function refundWithSignature(ChannelConfig config, uint128 amount, uint256 nonce, bytes receiverAuthorizerSignature) external;

            function getChannelId(ChannelConfig config) external view returns (bytes32);
            function CHANNEL_CONFIG_TYPEHASH() external view returns (bytes32);
            function channels(bytes32 channelId) external view returns (uint128 balance, uint128 totalClaimed);
            function pendingWithdrawals(bytes32 channelId) external view returns (uint128 amount, uint40 initiatedAt);
            function receivers(address receiver, address token) external view returns (uint128 totalClaimed, uint128 totalSettled);
            function refundNonce(bytes32 channelId) external view returns (uint256);
            function getVoucherDigest(bytes32 channelId, uint128 maxClaimableAmount) external view returns (bytes32);
            function getRefundDigest(bytes32 channelId, uint256 nonce, uint128 amount) external view returns (bytes32);
            function getClaimBatchDigest(VoucherClaim[] voucherClaims) external view returns (bytes32);
        }
    }
}

pub use bindings::*;
