//! Solidity interfaces of the Permit2 paths: the canonical Permit2 contract (its nonce bitmap),
//! the two x402 proxies (`x402ExactPermit2Proxy`, `x402UptoPermit2Proxy`), and the ERC-20 /
//! EIP-2612 reads and writes around them.
//!
//! The proxies' ABIs are the official SDK's (`@x402/evm` 2.27.0, `x402ExactPermit2ProxyABI`
//! and `x402UptoPermit2ProxyABI`); the EIP-712 structs are the ones Permit2's
//! `permitWitnessTransferFrom` hashes. The exact and upto witnesses are both named `Witness` in
//! EIP-712 (the type string is part of the signed hash), so each lives in its own module.

// The generated bindings mirror Solidity signatures, which take more arguments than clippy likes.
#![allow(clippy::too_many_arguments)]

use alloy::sol;

/// The `exact` proxy and its EIP-712 types (`Witness(address to,uint256 validAfter)`).
pub mod exact {
    use super::sol;

    sol! {
        /// Permit2's `TokenPermissions`.
        #[derive(Debug, PartialEq, Eq)]
        struct TokenPermissions {
            address token;
            uint256 amount;
        }

        /// The exact proxy's witness: where the money goes, and from when.
        #[derive(Debug, PartialEq, Eq)]
        struct Witness {
            address to;
            uint256 validAfter;
        }

        /// What the payer signs (EIP-712 primary type, Permit2 domain).
        #[derive(Debug, PartialEq, Eq)]
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted;
            address spender;
            uint256 nonce;
            uint256 deadline;
            Witness witness;
        }

        /// Permit2's `ISignatureTransfer.PermitTransferFrom` (ABI argument of the proxy).
        #[derive(Debug, PartialEq, Eq)]
        struct PermitTransferFrom {
            TokenPermissions permitted;
            uint256 nonce;
            uint256 deadline;
        }

        /// An EIP-2612 permit for Permit2, split as the proxy takes it.
        #[derive(Debug, PartialEq, Eq)]
        struct EIP2612Permit {
            uint256 value;
            uint256 deadline;
            bytes32 r;
            bytes32 s;
            uint8 v;
        }

        /// `x402ExactPermit2Proxy`.
        #[sol(rpc)]
        interface IX402ExactPermit2Proxy {
            function PERMIT2() external view returns (address);
            function settle(PermitTransferFrom permit, address owner, Witness witness, bytes signature) external;
            function settleWithPermit(EIP2612Permit permit2612, PermitTransferFrom permit, address owner, Witness witness, bytes signature) external;
        }
    }
}

/// The `upto` proxy and its EIP-712 types
/// (`Witness(address to,address facilitator,uint256 validAfter)`).
pub mod upto {
    use super::sol;

    sol! {
        /// Permit2's `TokenPermissions`.
        #[derive(Debug, PartialEq, Eq)]
        struct TokenPermissions {
            address token;
            uint256 amount;
        }

        /// The upto proxy's witness: where the money goes, who may settle, and from when.
        #[derive(Debug, PartialEq, Eq)]
        struct Witness {
            address to;
            address facilitator;
            uint256 validAfter;
        }

        /// What the payer signs (EIP-712 primary type, Permit2 domain).
        #[derive(Debug, PartialEq, Eq)]
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted;
            address spender;
            uint256 nonce;
            uint256 deadline;
            Witness witness;
        }

        /// Permit2's `ISignatureTransfer.PermitTransferFrom`.
        #[derive(Debug, PartialEq, Eq)]
        struct PermitTransferFrom {
            TokenPermissions permitted;
            uint256 nonce;
            uint256 deadline;
        }

        /// An EIP-2612 permit for Permit2, split as the proxy takes it.
        #[derive(Debug, PartialEq, Eq)]
        struct EIP2612Permit {
            uint256 value;
            uint256 deadline;
            bytes32 r;
            bytes32 s;
            uint8 v;
        }

        /// `x402UptoPermit2Proxy`: `amount` is the charge, at most `permit.permitted.amount`.
        #[sol(rpc)]
        interface IX402UptoPermit2Proxy {
            function PERMIT2() external view returns (address);
            function settle(PermitTransferFrom permit, uint256 amount, address owner, Witness witness, bytes signature) external;
            function settleWithPermit(EIP2612Permit permit2612, PermitTransferFrom permit, uint256 amount, address owner, Witness witness, bytes signature) external;
        }
    }
}

sol! {
    /// The canonical Permit2 contract: only the unordered-nonce bitmap is read.
    #[sol(rpc)]
    interface IPermit2 {
        function nonceBitmap(address owner, uint256 wordPos) external view returns (uint256);
    }

    /// An ERC-20 token as the Permit2 paths use it (plus EIP-2612's `nonces`).
    #[sol(rpc)]
    interface IErc20Permit2 {
        event Transfer(address indexed from, address indexed to, uint256 value);
        function allowance(address owner, address spender) external view returns (uint256);
        function balanceOf(address account) external view returns (uint256);
        function approve(address spender, uint256 amount) external returns (bool);
        function nonces(address owner) external view returns (uint256);
    }

    /// EIP-2612's signed message.
    #[derive(Debug, PartialEq, Eq)]
    struct Permit {
        address owner;
        address spender;
        uint256 value;
        uint256 nonce;
        uint256 deadline;
    }
}
