// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {ISignatureTransfer} from "./ISignatureTransfer.sol";

/// @title Permit2 (signature transfers)
/// @notice A Permit2-compatible signature-transfer contract for local chains, written from
/// Permit2's published interface and EIP-712: same EIP-712 domain, same typed-data hashes, same
/// unordered nonce bitmap, same errors. Installed at Permit2's canonical address
/// `0x000000000022D473030F116dDEE9F6B43aC78BA3` so that x402 clients, which sign for that
/// address, and the x402 Permit2 proxies, which call it, work unchanged.
/// @dev Only the single-token signature-transfer path exists (`permitTransferFrom`,
/// `permitWitnessTransferFrom`, the nonce bitmap); x402 uses nothing else. The batch variants
/// and Permit2's allowance-transfer half are left out.
///
/// Nothing here is set by a constructor and there are no immutables: the domain separator is
/// computed from `block.chainid` and `address(this)` on every call, so the runtime code can be
/// copied to the canonical address (`anvil_setCode`, a genesis account) and is right there, and
/// on any chain id.
contract Permit2 is ISignatureTransfer {
    /// @dev Permit2's EIP-712 domain has a name, a chain id and a verifying contract, and no
    /// version: signers omit `version`, so the separator must too.
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("Permit2");

    bytes32 public constant TOKEN_PERMISSIONS_TYPEHASH = keccak256("TokenPermissions(address token,uint256 amount)");
    bytes32 public constant PERMIT_TRANSFER_FROM_TYPEHASH = keccak256(
        "PermitTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline)TokenPermissions(address token,uint256 amount)"
    );
    /// @dev The caller's `witnessTypeString` completes this stub, e.g. `Witness witness)` followed
    /// by the referenced types in alphabetical order; the full string is the EIP-712 type of the
    /// primary struct, so it must be exactly what the signer's wallet encoded.
    string public constant PERMIT_TRANSFER_FROM_WITNESS_TYPEHASH_STUB =
        "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,";

    /// @dev EIP-1271's magic value, `bytes4(keccak256("isValidSignature(bytes32,bytes)"))`.
    bytes4 private constant ERC1271_MAGIC_VALUE = 0x1626ba7e;
    /// @dev EIP-2098: the top bit of `vs` is the parity of `v`, the rest is `s`.
    bytes32 private constant UPPER_BIT_MASK = 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff;

    /// @notice Signature length is neither 65 (r, s, v) nor 64 (EIP-2098 r, vs).
    error InvalidSignatureLength();
    /// @notice ecrecover found no signer.
    error InvalidSignature();
    /// @notice The signature is someone else's.
    error InvalidSigner();
    /// @notice The owner is a contract and did not accept the signature (EIP-1271).
    error InvalidContractSignature();
    /// @notice Used nonces: owner → word position (`nonce >> 8`) → 256 bits, one per nonce
    /// (`nonce & 0xff`). Nonces are unordered so a payer can hold many payments open at once
    /// and each is spent independently.
    mapping(address => mapping(uint256 => uint256)) public nonceBitmap;

    /// @notice The EIP-712 domain separator: name "Permit2", this chain, this address.
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, block.chainid, address(this)));
    }

    /// @notice Marks the nonces set in `mask` at word `wordPos` as used, so signatures carrying
    /// them can no longer be spent (how an owner cancels outstanding permits).
    function invalidateUnorderedNonces(uint256 wordPos, uint256 mask) external {
        nonceBitmap[msg.sender][wordPos] |= mask;
        emit UnorderedNonceInvalidation(msg.sender, wordPos, mask);
    }

    /// @notice Moves `transferDetails.requestedAmount` (≤ the permitted amount) of the permitted
    /// token from `owner` to `transferDetails.to`, authorised by `owner`'s signature over
    /// `PermitTransferFrom` with `msg.sender` as the spender.
    function permitTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes calldata signature
    ) external {
        bytes32 structHash = keccak256(
            abi.encode(
                PERMIT_TRANSFER_FROM_TYPEHASH, _hashTokenPermissions(permit), msg.sender, permit.nonce, permit.deadline
            )
        );
        _permitTransferFrom(permit, transferDetails, owner, structHash, signature);
    }

    /// @notice Like `permitTransferFrom`, with extra data (the witness) the owner also signed:
    /// the spender passes the witness's struct hash and its type string, and the signature only
    /// verifies if they are what the owner saw. The x402 proxies bind the payee this way.
    function permitWitnessTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 witness,
        string calldata witnessTypeString,
        bytes calldata signature
    ) external {
        bytes32 typeHash = keccak256(abi.encodePacked(PERMIT_TRANSFER_FROM_WITNESS_TYPEHASH_STUB, witnessTypeString));
        bytes32 structHash = keccak256(
            abi.encode(typeHash, _hashTokenPermissions(permit), msg.sender, permit.nonce, permit.deadline, witness)
        );
        _permitTransferFrom(permit, transferDetails, owner, structHash, signature);
    }

    function _hashTokenPermissions(PermitTransferFrom calldata permit) private pure returns (bytes32) {
        return keccak256(abi.encode(TOKEN_PERMISSIONS_TYPEHASH, permit.permitted.token, permit.permitted.amount));
    }

    /// @dev The checks in Permit2's order: deadline, amount, nonce (spent before the signature
    /// check, which is fine because a failing check reverts everything), signature, transfer.
    function _permitTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 structHash,
        bytes calldata signature
    ) private {
        uint256 requestedAmount = transferDetails.requestedAmount;
        if (block.timestamp > permit.deadline) revert SignatureExpired(permit.deadline);
        if (requestedAmount > permit.permitted.amount) revert InvalidAmount(permit.permitted.amount);
        _useUnorderedNonce(owner, permit.nonce);
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", DOMAIN_SEPARATOR(), structHash));
        _verify(signature, digest, owner);
        _safeTransferFrom(permit.permitted.token, owner, transferDetails.to, requestedAmount);
    }

    function _useUnorderedNonce(address from, uint256 nonce) private {
        uint256 wordPos = nonce >> 8;
        uint256 bit = 1 << (nonce & 0xff);
        uint256 flipped = nonceBitmap[from][wordPos] ^= bit;
        if (flipped & bit == 0) revert InvalidNonce();
    }

    /// @dev Owners with code are asked via EIP-1271 (any signature format they accept); owners
    /// without code must have signed with their key, as 65 bytes (r, s, v) or 64 bytes (EIP-2098).
    function _verify(bytes calldata signature, bytes32 digest, address claimedSigner) private view {
        if (claimedSigner.code.length == 0) {
            bytes32 r;
            bytes32 s;
            uint8 v;
            if (signature.length == 65) {
                (r, s) = abi.decode(signature, (bytes32, bytes32));
                v = uint8(signature[64]);
            } else if (signature.length == 64) {
                bytes32 vs;
                (r, vs) = abi.decode(signature, (bytes32, bytes32));
                s = vs & UPPER_BIT_MASK;
                v = uint8(uint256(vs >> 255)) + 27;
            } else {
                revert InvalidSignatureLength();
            }
            address signer = ecrecover(digest, v, r, s);
            if (signer == address(0)) revert InvalidSignature();
            if (signer != claimedSigner) revert InvalidSigner();
        } else {
            (bool ok, bytes memory ret) =
                claimedSigner.staticcall(abi.encodeWithSelector(ERC1271_MAGIC_VALUE, digest, signature));
            if (!ok || ret.length < 32 || bytes4(abi.decode(ret, (bytes32))) != ERC1271_MAGIC_VALUE) {
                revert InvalidContractSignature();
            }
        }
    }

    /// @dev Accepts tokens that return `true` and tokens that return nothing (USDT on Ethereum);
    /// anything else reverts with Permit2's "TRANSFER_FROM_FAILED". Unlike Permit2 it also
    /// refuses an address without code, where the call would "succeed", move nothing and spend
    /// the nonce.
    function _safeTransferFrom(address token, address from, address to, uint256 amount) private {
        bool ok = token.code.length != 0;
        bytes memory ret;
        if (ok) (ok, ret) = token.call(abi.encodeWithSelector(0x23b872dd, from, to, amount));
        require(ok && (ret.length == 0 || (ret.length >= 32 && abi.decode(ret, (bool)))), "TRANSFER_FROM_FAILED");
    }
}
