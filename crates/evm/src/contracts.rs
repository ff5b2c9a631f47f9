//! Solidity interfaces the `exact` scheme talks to, as typed alloy bindings.
//!
//! Only the functions Tollgate calls are declared: EIP-3009 on the token (both signature
//! overloads, since EOAs settle through `(v, r, s)` and contract wallets through `bytes`), the
//! ERC-20 reads verification needs, EIP-1271 for contract wallets, and Multicall3 for batches.

use alloy::sol;

// The generated bindings mirror Solidity signatures, which take more arguments than clippy likes.
#[allow(clippy::too_many_arguments)]
mod bindings {
    use super::sol;

    sol! {
        /// An ERC-20 token with EIP-3009 `transferWithAuthorization` (e.g. USDC).
        #[sol(rpc)]
        interface IEip3009Token {
            event Transfer(address indexed from, address indexed to, uint256 value);
        event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);

            function transferWithAuthorization(
                address from,
                address to,
                uint256 value,
                uint256 validAfter,
                uint256 validBefore,
                bytes32 nonce,
                uint8 v,
                bytes32 r,
                bytes32 s
            ) external;

            function transferWithAuthorization(
                address from,
                address to,
                uint256 value,
                uint256 validAfter,
                uint256 validBefore,
                bytes32 nonce,
                bytes signature
            ) external;

            function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
            function balanceOf(address account) external view returns (uint256);
            function name() external view returns (string);
            function version() external view returns (string);
        }

        /// Multicall3's `aggregate3`: many calls in one transaction, each allowed to fail on
        /// its own (batch settlement).
        #[sol(rpc)]
        interface IMulticall3 {
            struct Call3 {
                address target;
                bool allowFailure;
                bytes callData;
            }
            struct Result {
                bool success;
                bytes returnData;
            }
            function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory returnData);
        }

        /// Tollgate's `AuthorizationProbe` (`contracts/src`): many dry runs in one `eth_call`,
        /// each rolled back before the next, run from a state override.
        interface IAuthorizationProbe {
            struct Probe {
                address token;
                address payer;
                bytes data;
            }
            struct Verdict {
                uint256 payerCodeSize;
                uint8 status;
                bytes output;
            }
            function probe(Probe[] calldata probes) external returns (Verdict[] memory verdicts);
        }

        /// EIP-1271: signature validation by a contract account.
        #[sol(rpc)]
        interface IErc1271 {
            function isValidSignature(bytes32 hash, bytes signature) external view returns (bytes4);
        }

        /// The EIP-712 struct an EIP-3009 payer signs.
        #[derive(Debug, PartialEq, Eq)]
        struct TransferWithAuthorization {
            address from;
            address to;
            uint256 value;
            uint256 validAfter;
            uint256 validBefore;
            bytes32 nonce;
        }
    }
}

pub(crate) use bindings::IAuthorizationProbe;
pub use bindings::{IEip3009Token, IErc1271, IMulticall3, TransferWithAuthorization};

/// The value EIP-1271's `isValidSignature` returns for a valid signature.
pub const ERC1271_MAGIC_VALUE: [u8; 4] = [0x16, 0x26, 0xba, 0x7e];

/// The 32-byte suffix that marks an EIP-6492 wrapped signature.
pub const EIP6492_MAGIC_SUFFIX: [u8; 32] = [
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
];

/// Creation code of the project's deployless EIP-6492 validator (`contracts/src/Eip6492Validator.sol`).
///
/// It is run with `eth_call` and no `to`: its constructor validates `(signer, hash, signature)`,
/// deploying a counterfactual wallet in the call's scratch state if needed, and returns one byte.
pub(crate) fn eip6492_validator_code() -> Result<alloy::primitives::Bytes, String> {
    const ARTIFACT: &str = include_str!("../../../contracts/out/Eip6492Validator.json");
    let value: serde_json::Value = serde_json::from_str(ARTIFACT).map_err(|e| e.to_string())?;
    value
        .get("bytecode")
        .and_then(|b| b.as_str())
        .ok_or_else(|| "validator artifact has no bytecode".to_string())?
        .parse()
        .map_err(|e| format!("validator bytecode is not hex: {e}"))
}

/// Runtime code of the project's `AuthorizationProbe` (`contracts/src/AuthorizationProbe.sol`),
/// which the facilitator places at an unused address through an `eth_call` state override.
pub(crate) fn authorization_probe_code() -> alloy::primitives::Bytes {
    static CODE: std::sync::OnceLock<alloy::primitives::Bytes> = std::sync::OnceLock::new();
    CODE.get_or_init(|| {
        const ARTIFACT: &str = include_str!("../../../contracts/out/AuthorizationProbe.json");
        // The artifact is committed and checked by a unit test: it always parses.
        serde_json::from_str::<serde_json::Value>(ARTIFACT)
            .ok()
            .and_then(|v| v.get("deployedBytecode")?.as_str()?.parse().ok())
            .unwrap_or_default()
    })
    .clone()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_probe_artifact_has_runtime_code() {
        let code = super::authorization_probe_code();
        assert!(code.len() > 1000, "{} bytes", code.len());
    }
}
