// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title TestWallet1271
/// @notice The smallest useful smart-contract wallet: one owner key, EIP-1271 signature
/// validation, and an owner-only `execute`.
/// @dev Tests use it to prove that payments from contract wallets verify and settle: the token
/// sees code at the payer's address and asks this contract instead of running ecrecover.
/// WalletFactory deploys it with CREATE2 for the EIP-6492 (not yet deployed) case.
contract TestWallet1271 {
    /// @dev `bytes4(keccak256("isValidSignature(bytes32,bytes)"))`, EIP-1271's "valid" answer.
    bytes4 private constant MAGIC_VALUE = 0x1626ba7e;
    /// @dev Any other value means "invalid"; 0xffffffff is the customary one.
    bytes4 private constant INVALID = 0xffffffff;
    /// @dev Half the secp256k1 order; see TestUSDC for why high-s signatures are rejected.
    uint256 private constant SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// @notice The key that signs for this wallet.
    address public immutable owner;

    /// @dev The owner is a constructor argument (not msg.sender) so that a factory can deploy
    /// wallets for other keys, and so the CREATE2 address depends on the owner.
    constructor(address owner_) {
        owner = owner_;
    }

    /// @notice EIP-1271: valid iff `signature` is the owner's 65-byte ECDSA signature (r ++ s ++
    /// v) of `hash` itself (no extra prefix or wrapping).
    /// @dev Never reverts: callers (tokens, validators) treat a revert and an invalid answer
    /// differently in places, and a malformed signature should simply be invalid.
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        if (signature.length != 65) return INVALID;
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > SECP256K1_HALF_N) return INVALID;
        if (v != 27 && v != 28) return INVALID;
        address recovered = ecrecover(hash, v, r, s);
        // ecrecover yields address(0) on failure; an owner of address(0) must not match it.
        return recovered != address(0) && recovered == owner ? MAGIC_VALUE : INVALID;
    }

    /// @notice Lets the owner act as the wallet, e.g. to move its tokens in tests.
    /// @dev Reverts with the callee's own revert data so tests can assert on the real reason.
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

    /// @dev Accepts ETH so tests can fund the wallet for `execute` calls that send value.
    receive() external payable {}
}
