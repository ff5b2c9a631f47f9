// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {TestERC20Base} from "./TestERC20Base.sol";

/// @title TestPermitToken
/// @notice An EIP-20 test token with EIP-2612 `permit` and no EIP-3009 ("Permit USD", EIP-712
/// version "1", 6 decimals): the token of x402's `eip2612GasSponsoring` extension, where the
/// payer signs a permit approving Permit2 and the facilitator submits it with the payment.
contract TestPermitToken is TestERC20Base {
    string private constant EIP712_NAME = "Permit USD";
    string private constant EIP712_VERSION = "1";

    bytes32 public constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    /// @dev Half the secp256k1 order: signatures with a larger `s` are refused, so each permit
    /// has one accepted encoding.
    uint256 private constant SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// @notice EIP-2612's per-owner counter; each permit consumes the current value.
    mapping(address => uint256) public nonces;

    function name() public pure override returns (string memory) {
        return EIP712_NAME;
    }

    function symbol() public pure override returns (string memory) {
        return "PUSD";
    }

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice The EIP-712 domain version, for clients that read it instead of assuming it.
    function version() external pure returns (string memory) {
        return EIP712_VERSION;
    }

    /// @notice The EIP-712 domain separator, computed per call so it follows the chain id.
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return keccak256(
            abi.encode(
                DOMAIN_TYPEHASH,
                keccak256(bytes(EIP712_NAME)),
                keccak256(bytes(EIP712_VERSION)),
                block.chainid,
                address(this)
            )
        );
    }

    /// @notice EIP-2612: sets `spender`'s allowance over `holder`'s tokens to `value`, authorised
    /// by `holder`'s signature instead of a transaction from `holder`.
    function permit(address holder, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
    {
        require(block.timestamp <= deadline, "ERC20Permit: expired deadline");
        require(uint256(s) <= SECP256K1_HALF_N, "ERC20Permit: invalid signature");
        bytes32 structHash = keccak256(abi.encode(PERMIT_TYPEHASH, holder, spender, value, nonces[holder]++, deadline));
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", DOMAIN_SEPARATOR(), structHash));
        address signer = ecrecover(digest, v, r, s);
        require(signer != address(0) && signer == holder, "ERC20Permit: invalid signature");
        _approve(holder, spender, value);
    }
}
