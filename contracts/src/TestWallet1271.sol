// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title TestWallet1271
/// @notice The smallest useful smart-contract wallet: one owner key, EIP-1271 signature
/// validation, and an owner-only `execute`. Tests use it to prove that payments from contract
/// wallets verify and settle through the token's `bytes` signature overload.
contract TestWallet1271 {
    bytes4 private constant MAGIC_VALUE = 0x1626ba7e;
    bytes4 private constant INVALID = 0xffffffff;

    address public immutable owner;

    constructor(address owner_) {
        owner = owner_;
    }

    /// @notice Valid iff `signature` is the owner's 65-byte ECDSA signature of `hash`.
    /// Never reverts: a malformed signature is simply invalid.
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        if (signature.length != 65) return INVALID;
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0) return INVALID;
        if (v != 27 && v != 28) return INVALID;
        address recovered = ecrecover(hash, v, r, s);
        return recovered != address(0) && recovered == owner ? MAGIC_VALUE : INVALID;
    }

    /// @notice Lets the owner move the wallet's funds (e.g. ERC-20 transfers) in tests.
    function execute(address target, uint256 value, bytes calldata data) external returns (bytes memory) {
        require(msg.sender == owner, "TestWallet1271: caller is not the owner");
        (bool ok, bytes memory ret) = target.call{value: value}(data);
        if (!ok) {
            assembly {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        return ret;
    }

    receive() external payable {}
}
