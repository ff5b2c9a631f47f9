// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title ISignatureTransfer
/// @notice The signature-transfer half of Permit2's interface, with Permit2's struct layouts,
/// so that the x402 proxies compile against the same ABI the canonical Permit2 exposes.
interface ISignatureTransfer {
    /// @notice A token and the most a signature lets a spender move of it.
    struct TokenPermissions {
        address token;
        uint256 amount;
    }

    /// @notice What the owner signed: token and maximum, a one-time nonce and a deadline.
    struct PermitTransferFrom {
        TokenPermissions permitted;
        uint256 nonce;
        uint256 deadline;
    }

    /// @notice Where the spender sends the tokens and how many (at most the permitted amount).
    struct SignatureTransferDetails {
        address to;
        uint256 requestedAmount;
    }

    /// @notice The deadline of the signature has passed.
    error SignatureExpired(uint256 signatureDeadline);
    /// @notice The spender asked for more than the owner permitted.
    error InvalidAmount(uint256 maxAmount);
    /// @notice The nonce was used (or invalidated) before.
    error InvalidNonce();

    event UnorderedNonceInvalidation(address indexed owner, uint256 word, uint256 mask);

    function DOMAIN_SEPARATOR() external view returns (bytes32);

    function nonceBitmap(address owner, uint256 wordPos) external view returns (uint256);

    function invalidateUnorderedNonces(uint256 wordPos, uint256 mask) external;

    function permitTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes calldata signature
    ) external;

    function permitWitnessTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 witness,
        string calldata witnessTypeString,
        bytes calldata signature
    ) external;
}
