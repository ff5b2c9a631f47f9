// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Eip6492Validator
/// @notice Universal signature validator (EIP-6492), meant to run *deployless*: an `eth_call`
/// with no `to` and data = creationCode ++ abi.encode(address signer, bytes32 hash, bytes
/// signature). The constructor does all the work and returns a single byte instead of runtime
/// code: 0x01 for a valid signature, 0x00 for an invalid one.
/// @dev Why deployless: a facilitator must check signatures of wallets that do not exist yet
/// (counterfactual, EIP-6492). Checking them means deploying the wallet first, which only
/// happens in the throw-away state of this `eth_call`; nothing is ever sent to the chain, and
/// no validator has to be deployed on every network beforehand.
///
/// One validator covers all three kinds of signer, so callers need not know which they have:
///   * EIP-6492 wrapped (ends with the magic suffix): deploy the wallet via its factory if it
///     has no code yet, then EIP-1271 with the inner signature;
///   * a contract: EIP-1271;
///   * an EOA: ecrecover of a 65-byte r ++ s ++ v signature.
contract Eip6492Validator {
    /// @dev EIP-6492's marker, appended to abi.encode(factory, factoryCalldata, innerSig).
    /// It is chosen so that it cannot plausibly be the tail of an ordinary ECDSA or EIP-1271
    /// signature.
    bytes32 private constant SUFFIX = 0x6492649264926492649264926492649264926492649264926492649264926492;

    /// @dev `bytes4(keccak256("isValidSignature(bytes32,bytes)"))`.
    bytes4 private constant ERC1271_MAGIC_VALUE = 0x1626ba7e;

    /// @dev Half the secp256k1 order. The EOA rules match TestUSDC's exactly (low s, v 27/28),
    /// so a signature this validator accepts is one the token accepts at settlement.
    uint256 private constant SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    constructor(address signer, bytes32 hash, bytes memory signature) {
        bool valid = _isValid(signer, hash, signature);
        // Return one byte as the call's output instead of deploying runtime code: the caller
        // of a deployless eth_call receives exactly what the constructor returns.
        assembly {
            mstore(0, valid)
            return(31, 1)
        }
    }

    function _isValid(address signer, bytes32 hash, bytes memory signature) private returns (bool) {
        if (_hasSuffix(signature)) {
            (bool decoded, address factory, bytes memory factoryCalldata, bytes memory innerSig) =
                _decodeWrapper(signature);
            // A malformed wrapper is an invalid signature, not an error: verifiers should get a
            // clean "no" for garbage rather than a revert they have to interpret.
            if (!decoded) return false;
            if (signer.code.length == 0) {
                // Deploy the wallet in this call's scratch state. The result is ignored on
                // purpose (EIP-6492): what matters is whether the signer has code afterwards,
                // e.g. a factory that reverts because the wallet already exists is fine.
                (bool ignored,) = factory.call(factoryCalldata);
                ignored;
                if (signer.code.length == 0) return false;
            }
            return _isValid1271(signer, hash, innerSig);
        }
        if (signer.code.length > 0) return _isValid1271(signer, hash, signature);
        return _isValidEcdsa(signer, hash, signature);
    }

    /// @dev Asks the wallet. A revert, a short answer or any value but the magic one is
    /// "invalid"; the answer is compared as a full word so that a wallet returning dirty bytes
    /// cannot make the ABI decoder revert this whole call.
    function _isValid1271(address signer, bytes32 hash, bytes memory signature) private view returns (bool) {
        (bool ok, bytes memory ret) =
            signer.staticcall(abi.encodeWithSelector(ERC1271_MAGIC_VALUE, hash, signature));
        return ok && ret.length >= 32 && abi.decode(ret, (bytes32)) == bytes32(ERC1271_MAGIC_VALUE);
    }

    function _isValidEcdsa(address signer, bytes32 hash, bytes memory signature) private pure returns (bool) {
        if (signature.length != 65) return false;
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(signature, 0x20))
            s := mload(add(signature, 0x40))
            v := byte(0, mload(add(signature, 0x60)))
        }
        if (uint256(s) > SECP256K1_HALF_N) return false;
        if (v != 27 && v != 28) return false;
        address recovered = ecrecover(hash, v, r, s);
        // ecrecover returns address(0) on failure, which must never count as a match.
        return recovered != address(0) && recovered == signer;
    }

    function _hasSuffix(bytes memory signature) private pure returns (bool) {
        if (signature.length < 32) return false;
        bytes32 tail;
        assembly {
            tail := mload(add(add(signature, 0x20), sub(mload(signature), 32)))
        }
        return tail == SUFFIX;
    }

    /// @dev Decodes signature[0 : len - 32] as abi.encode(address, bytes, bytes), checking every
    /// offset and length against the data first. Hand-written instead of abi.decode because
    /// abi.decode reverts on malformed input, and this validator must answer 0x00 instead.
    function _decodeWrapper(bytes memory signature)
        private
        pure
        returns (bool ok, address factory, bytes memory factoryCalldata, bytes memory innerSig)
    {
        uint256 size = signature.length - 32; // _hasSuffix guarantees length >= 32
        if (size < 96) return (false, address(0), "", "");
        uint256 factoryWord = _word(signature, 0);
        if (factoryWord >> 160 != 0) return (false, address(0), "", "");
        factory = address(uint160(factoryWord));
        bool ok1;
        bool ok2;
        (ok1, factoryCalldata) = _bytesAt(signature, size, _word(signature, 32));
        (ok2, innerSig) = _bytesAt(signature, size, _word(signature, 64));
        ok = ok1 && ok2;
    }

    /// @dev The 32-byte word at byte `offset` of `data`'s contents (caller checks bounds).
    function _word(bytes memory data, uint256 offset) private pure returns (uint256 value) {
        assembly {
            value := mload(add(add(data, 0x20), offset))
        }
    }

    /// @dev Copies the ABI-encoded `bytes` whose head is at `offset` within the first `size`
    /// bytes of `data`. The comparisons are arranged so that no attacker-chosen offset or
    /// length can overflow.
    function _bytesAt(bytes memory data, uint256 size, uint256 offset) private pure returns (bool, bytes memory) {
        if (offset > size - 32) return (false, "");
        uint256 length = _word(data, offset);
        if (length > size - 32 - offset) return (false, "");
        bytes memory out = new bytes(length);
        assembly {
            let src := add(add(data, 0x20), add(offset, 0x20))
            let dst := add(out, 0x20)
            // Whole words; `new bytes` rounds its allocation up to a word, so the last copy
            // stays inside `out`.
            for { let i := 0 } lt(i, length) { i := add(i, 0x20) } {
                mstore(add(dst, i), mload(add(src, i)))
            }
            // Zero whatever the last word copied past `length`, keeping `out` canonical.
            let rem := mod(length, 0x20)
            if rem {
                let last := add(dst, sub(length, rem))
                mstore(last, and(mload(last), not(shr(mul(8, rem), not(0)))))
            }
        }
        return (true, out);
    }
}
