//! Permit2 and the x402 Permit2 proxies as tests see them: their canonical addresses, their
//! ABIs (as `sol!` bindings with RPC calls), and the EIP-712 hashes a payer signs.
//!
//! Both backends hold the same code at the same addresses: on anvil the rig copies the runtime
//! code in with `anvil_setCode`; on the devnet it is in the genesis state. So software that
//! hard-codes the canonical addresses — the official x402 SDK does — works unchanged.
//!
//! The typed data here is the official SDK's (`permit2WitnessTypes`, `uptoPermit2WitnessTypes`
//! of `@x402/evm` 2.27.0): primary type `PermitWitnessTransferFrom`, domain
//! `{name: "Permit2", chainId, verifyingContract: PERMIT2}` (no version).

use alloy::primitives::{Address, B256, U256};
use alloy::sol;
use alloy::sol_types::{eip712_domain, Eip712Domain, SolError, SolStruct};

pub use tollgate_devnet::{EXACT_PERMIT2_PROXY, PERMIT2, UPTO_PERMIT2_PROXY};

sol! {
    /// A token and the most the signature lets the spender move.
    #[derive(Debug, PartialEq, Eq)]
    struct TokenPermissions {
        address token;
        uint256 amount;
    }

    /// What the payer signed (with the spender and the witness): Permit2's `PermitTransferFrom`.
    #[derive(Debug, PartialEq, Eq)]
    struct PermitTransferFrom {
        TokenPermissions permitted;
        uint256 nonce;
        uint256 deadline;
    }

    /// Where a Permit2 transfer goes and how much.
    #[derive(Debug, PartialEq, Eq)]
    struct SignatureTransferDetails {
        address to;
        uint256 requestedAmount;
    }

    /// The `exact` proxy's witness, `Witness(address to,uint256 validAfter)` (ABI form; the
    /// EIP-712 struct is [`exact_typed::Witness`]).
    #[derive(Debug, PartialEq, Eq)]
    struct ExactWitness {
        address to;
        uint256 validAfter;
    }

    /// The `upto` proxy's witness, `Witness(address to,address facilitator,uint256 validAfter)`
    /// (ABI form; the EIP-712 struct is [`upto_typed::Witness`]).
    #[derive(Debug, PartialEq, Eq)]
    struct UptoWitness {
        address to;
        address facilitator;
        uint256 validAfter;
    }

    /// An EIP-2612 permit as the proxies' `settleWithPermit` takes it.
    #[derive(Debug, PartialEq, Eq)]
    struct EIP2612Permit {
        uint256 value;
        uint256 deadline;
        bytes32 r;
        bytes32 s;
        uint8 v;
    }

    /// Permit2's signature-transfer interface (what our `Permit2` implements).
    #[sol(rpc)]
    interface IPermit2 {
        error SignatureExpired(uint256 signatureDeadline);
        error InvalidAmount(uint256 maxAmount);
        error InvalidNonce();
        error InvalidSignatureLength();
        error InvalidSignature();
        error InvalidSigner();
        error InvalidContractSignature();
        event UnorderedNonceInvalidation(address indexed owner, uint256 word, uint256 mask);
        function DOMAIN_SEPARATOR() external view returns (bytes32);
        function nonceBitmap(address owner, uint256 wordPos) external view returns (uint256);
        function invalidateUnorderedNonces(uint256 wordPos, uint256 mask) external;
        function permitTransferFrom(
            PermitTransferFrom permit,
            SignatureTransferDetails transferDetails,
            address owner,
            bytes signature
        ) external;
        function permitWitnessTransferFrom(
            PermitTransferFrom permit,
            SignatureTransferDetails transferDetails,
            address owner,
            bytes32 witness,
            string witnessTypeString,
            bytes signature
        ) external;
    }

    /// `x402ExactPermit2Proxy`, with the official SDK's ABI.
    #[sol(rpc)]
    interface IX402ExactPermit2Proxy {
        event Settled();
        event SettledWithPermit();
        error InvalidAmount();
        error InvalidDestination();
        error InvalidOwner();
        error InvalidPermit2Address();
        error PaymentTooEarly();
        error Permit2612AmountMismatch();
        error ReentrancyGuardReentrantCall();
        function PERMIT2() external view returns (address);
        function WITNESS_TYPEHASH() external view returns (bytes32);
        function WITNESS_TYPE_STRING() external view returns (string);
        function settle(
            PermitTransferFrom permit,
            address owner,
            ExactWitness witness,
            bytes signature
        ) external;
        function settleWithPermit(
            EIP2612Permit permit2612,
            PermitTransferFrom permit,
            address owner,
            ExactWitness witness,
            bytes signature
        ) external;
    }

    /// `x402UptoPermit2Proxy`, with the official SDK's ABI (plus `InvalidAmount` for a zero
    /// settlement, which the proxy refuses rather than burn the payer's nonce).
    #[sol(rpc)]
    interface IX402UptoPermit2Proxy {
        event Settled();
        event SettledWithPermit();
        error AmountExceedsPermitted();
        error InvalidAmount();
        error InvalidDestination();
        error InvalidOwner();
        error InvalidPermit2Address();
        error PaymentTooEarly();
        error Permit2612AmountMismatch();
        error ReentrancyGuardReentrantCall();
        error UnauthorizedFacilitator();
        function PERMIT2() external view returns (address);
        function WITNESS_TYPEHASH() external view returns (bytes32);
        function WITNESS_TYPE_STRING() external view returns (string);
        function settle(
            PermitTransferFrom permit,
            uint256 amount,
            address owner,
            UptoWitness witness,
            bytes signature
        ) external;
        function settleWithPermit(
            EIP2612Permit permit2612,
            PermitTransferFrom permit,
            uint256 amount,
            address owner,
            UptoWitness witness,
            bytes signature
        ) external;
    }

    /// The test tokens' ERC-20 surface (USDT-like and EIP-2612 tokens; account 0 mints).
    #[sol(rpc)]
    interface ITestToken {
        event Transfer(address indexed from, address indexed to, uint256 value);
        event Approval(address indexed owner, address indexed spender, uint256 value);
        function name() external view returns (string);
        function symbol() external view returns (string);
        function decimals() external view returns (uint8);
        function totalSupply() external view returns (uint256);
        function balanceOf(address account) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
        function approve(address spender, uint256 value) external returns (bool);
        function transfer(address to, uint256 value) external returns (bool);
        function transferFrom(address from, address to, uint256 value) external returns (bool);
        function mint(address to, uint256 amount) external;
        function mintBatch(address[] to, uint256 amount) external;
    }
}

pub use erc2612::IErc2612;

/// Kept apart so the lint allowance covers only EIP-2612's seven-argument `permit` binding.
mod erc2612 {
    #![allow(clippy::too_many_arguments)]
    alloy::sol! {
        /// EIP-2612 on the permit token.
        #[sol(rpc)]
        interface IErc2612 {
            function permit(
                address owner,
                address spender,
                uint256 value,
                uint256 deadline,
                uint8 v,
                bytes32 r,
                bytes32 s
            ) external;
            function nonces(address owner) external view returns (uint256);
            function DOMAIN_SEPARATOR() external view returns (bytes32);
            function version() external view returns (string);
        }
    }
}

/// The EIP-712 structs of an `exact` Permit2 payment, named as the payer's wallet sees them.
pub mod exact_typed {
    alloy::sol! {
        #[derive(Debug)]
        struct TokenPermissions {
            address token;
            uint256 amount;
        }
        #[derive(Debug)]
        struct Witness {
            address to;
            uint256 validAfter;
        }
        #[derive(Debug)]
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted;
            address spender;
            uint256 nonce;
            uint256 deadline;
            Witness witness;
        }
    }
}

/// The EIP-712 structs of an `upto` payment, named as the payer's wallet sees them.
pub mod upto_typed {
    alloy::sol! {
        #[derive(Debug)]
        struct TokenPermissions {
            address token;
            uint256 amount;
        }
        #[derive(Debug)]
        struct Witness {
            address to;
            address facilitator;
            uint256 validAfter;
        }
        #[derive(Debug)]
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted;
            address spender;
            uint256 nonce;
            uint256 deadline;
            Witness witness;
        }
    }
}

/// EIP-2612's `Permit` struct.
mod eip2612_typed {
    alloy::sol! {
        struct Permit {
            address owner;
            address spender;
            uint256 value;
            uint256 nonce;
            uint256 deadline;
        }
    }
}

/// Permit2's EIP-712 domain on `chain_id`: name "Permit2", the chain, the canonical address, and
/// no version.
pub fn permit2_domain(chain_id: u64) -> Eip712Domain {
    eip712_domain! {
        name: "Permit2",
        chain_id: chain_id,
        verifying_contract: PERMIT2,
    }
}

/// The digest a payer signs for an `exact` Permit2 payment: `permit` spent by `spender`
/// (normally [`EXACT_PERMIT2_PROXY`]) with `witness`.
pub fn exact_signing_hash(
    chain_id: u64,
    permit: &PermitTransferFrom,
    spender: Address,
    witness: &ExactWitness,
) -> B256 {
    exact_typed::PermitWitnessTransferFrom {
        permitted: exact_typed::TokenPermissions {
            token: permit.permitted.token,
            amount: permit.permitted.amount,
        },
        spender,
        nonce: permit.nonce,
        deadline: permit.deadline,
        witness: exact_typed::Witness {
            to: witness.to,
            validAfter: witness.validAfter,
        },
    }
    .eip712_signing_hash(&permit2_domain(chain_id))
}

/// The digest a payer signs for an `upto` payment: at most `permit`'s amount, spent by `spender`
/// (normally [`UPTO_PERMIT2_PROXY`]) with `witness`.
pub fn upto_signing_hash(
    chain_id: u64,
    permit: &PermitTransferFrom,
    spender: Address,
    witness: &UptoWitness,
) -> B256 {
    upto_typed::PermitWitnessTransferFrom {
        permitted: upto_typed::TokenPermissions {
            token: permit.permitted.token,
            amount: permit.permitted.amount,
        },
        spender,
        nonce: permit.nonce,
        deadline: permit.deadline,
        witness: upto_typed::Witness {
            to: witness.to,
            facilitator: witness.facilitator,
            validAfter: witness.validAfter,
        },
    }
    .eip712_signing_hash(&permit2_domain(chain_id))
}

/// An EIP-2612 permit as the permit token checks it: the owner lets `spender` (for the
/// `eip2612GasSponsoring` extension, [`PERMIT2`]) move `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eip2612Approval {
    /// The token holder who signs.
    pub owner: Address,
    /// Who may spend.
    pub spender: Address,
    /// The allowance set.
    pub value: U256,
    /// The owner's current `nonces(owner)`.
    pub nonce: U256,
    /// Last second the permit may be submitted.
    pub deadline: U256,
}

/// The digest of an EIP-2612 permit on `token`, whose EIP-712 domain is (`name`, `version`).
pub fn eip2612_signing_hash(
    chain_id: u64,
    token: Address,
    name: &str,
    version: &str,
    approval: &Eip2612Approval,
) -> B256 {
    let domain = Eip712Domain::new(
        Some(name.to_owned().into()),
        Some(version.to_owned().into()),
        Some(U256::from(chain_id)),
        Some(token),
        None,
    );
    eip2612_typed::Permit {
        owner: approval.owner,
        spender: approval.spender,
        value: approval.value,
        nonce: approval.nonce,
        deadline: approval.deadline,
    }
    .eip712_signing_hash(&domain)
}

/// The name of a custom error of Permit2 or either proxy from revert data, e.g.
/// `"InvalidNonce"` (Permit2's `InvalidAmount(uint256)` is told apart from the proxies'
/// `InvalidAmount`); `"Error(string)"` for a string revert such as Permit2's
/// `TRANSFER_FROM_FAILED` (no allowance or balance); `None` for anything else.
/// Reverts from Permit2 surface unchanged through the proxies, so one table serves both.
pub fn revert_name(data: &[u8]) -> Option<&'static str> {
    let selector: [u8; 4] = data.get(..4)?.try_into().ok()?;
    use IPermit2 as P;
    use IX402UptoPermit2Proxy as U;
    let known: [([u8; 4], &'static str); 18] = [
        (P::SignatureExpired::SELECTOR, "SignatureExpired"),
        (P::InvalidAmount::SELECTOR, "InvalidAmount(uint256)"),
        (P::InvalidNonce::SELECTOR, "InvalidNonce"),
        (
            P::InvalidSignatureLength::SELECTOR,
            "InvalidSignatureLength",
        ),
        (P::InvalidSignature::SELECTOR, "InvalidSignature"),
        (P::InvalidSigner::SELECTOR, "InvalidSigner"),
        (
            P::InvalidContractSignature::SELECTOR,
            "InvalidContractSignature",
        ),
        (
            U::AmountExceedsPermitted::SELECTOR,
            "AmountExceedsPermitted",
        ),
        (U::InvalidAmount::SELECTOR, "InvalidAmount"),
        (U::InvalidDestination::SELECTOR, "InvalidDestination"),
        (U::InvalidOwner::SELECTOR, "InvalidOwner"),
        (U::InvalidPermit2Address::SELECTOR, "InvalidPermit2Address"),
        (U::PaymentTooEarly::SELECTOR, "PaymentTooEarly"),
        (
            U::Permit2612AmountMismatch::SELECTOR,
            "Permit2612AmountMismatch",
        ),
        (
            U::ReentrancyGuardReentrantCall::SELECTOR,
            "ReentrancyGuardReentrantCall",
        ),
        (
            U::UnauthorizedFacilitator::SELECTOR,
            "UnauthorizedFacilitator",
        ),
        // `Error(string)`: Permit2's "TRANSFER_FROM_FAILED" (no allowance, no balance).
        ([0x08, 0xc3, 0x79, 0xa0], "Error(string)"),
        // `Panic(uint256)`.
        ([0x4e, 0x48, 0x7b, 0x71], "Panic(uint256)"),
    ];
    known
        .iter()
        .find(|(s, _)| *s == selector)
        .map(|(_, name)| *name)
}
