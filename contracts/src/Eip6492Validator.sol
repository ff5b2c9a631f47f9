// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

interface IERC1271Wallet {
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4);
}

/// @title Eip6492Validator
/// @notice Universal signature validator for EIP-6492, meant to run *deployless*: an `eth_call`
/// with no `to` and data = creationCode ++ abi.encode(signer, hash, signature). The constructor
/// does the work and returns a single byte, 0x01 for valid and 0x00 for invalid, so a verifier
/// can check a counterfactual wallet's signature without deploying anything on chain.
contract Eip6492Validator {
    bytes32 private constant SUFFIX = 0x6492649264926492649264926492649264926492649264926492649264926492;

    constructor(address signer, bytes32 hash, bytes memory signature) {
        bool valid = _isValid(signer, hash, signature);
        assembly {
            mstore(0, valid)
            return(31, 1)
        }
    }

    function _isValid(address signer, bytes32 hash, bytes memory signature) private returns (bool) {
        bytes memory sig = signature;
        if (_hasSuffix(signature)) {
            bytes memory body = new bytes(signature.length - 32);
            for (uint256 i = 0; i < body.length; i++) {
                body[i] = signature[i];
            }
            (address factory, bytes memory factoryCalldata, bytes memory inner) =
                abi.decode(body, (address, bytes, bytes));
            if (signer.code.length == 0) {
                // Deploy the wallet in this call's scratch state; nothing reaches the chain.
                (bool ok,) = factory.call(factoryCalldata);
                if (!ok || signer.code.length == 0) return false;
            }
            sig = inner;
        }
        if (signer.code.length > 0) {
            (bool ok, bytes memory ret) =
                signer.staticcall(abi.encodeWithSelector(IERC1271Wallet.isValidSignature.selector, hash, sig));
            return ok && ret.length >= 32 && abi.decode(ret, (bytes4)) == bytes4(0x1626ba7e);
        }
        if (sig.length != 65) return false;
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(sig, 0x20))
            s := mload(add(sig, 0x40))
            v := byte(0, mload(add(sig, 0x60)))
        }
        address recovered = ecrecover(hash, v, r, s);
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
}
