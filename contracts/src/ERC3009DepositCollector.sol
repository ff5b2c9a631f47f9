// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {BatchDepositCollector} from "./IDepositCollector.sol";

/// @notice EIP-3009's `receiveWithAuthorization` (`bytes` signature overload, which USDC v2.2
/// and our `TestUSDC` have; EOAs and EIP-1271 wallets alike) and the ERC-20 transfer.
interface IReceiveWithAuthorization {
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) external;

    function transfer(address to, uint256 value) external returns (bool);
}

/// @title ERC3009DepositCollector
/// @notice Canonical address `0x4020806089470a89826cB9fB1f4059150b550004`. Deposits a payer's
/// EIP-3009 token (USDC) into a batch-settlement channel without the payer sending a
/// transaction: the payer signs `ReceiveWithAuthorization` to this collector, the facilitator
/// submits `x402BatchSettlement.deposit`, which calls `collect`.
/// @dev `receiveWithAuthorization` only lets the payee (`to == msg.sender`) submit, so tokens land
/// here and are forwarded to the settlement contract in the same call. The authorization's nonce
/// is `keccak256(abi.encode(channelId, salt))`: the payer's signature names the channel, so a
/// deposit signed for one channel cannot be credited to another, and `salt` (chosen by the
/// payer) lets one channel take many deposits. `collectorData` is
/// `abi.encode(uint256 validAfter, uint256 validBefore, uint256 salt, bytes signature)`.
contract ERC3009DepositCollector is BatchDepositCollector {
    /// @notice The token's `transfer` to the settlement contract returned false.
    error TransferFailed();

    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata collectorData)
        external
        override
        onlyx402BatchSettlement
    {
        (uint256 validAfter, uint256 validBefore, uint256 salt, bytes memory signature) =
            abi.decode(collectorData, (uint256, uint256, uint256, bytes));
        bytes32 nonce = keccak256(abi.encode(channelId, salt));
        IReceiveWithAuthorization(token).receiveWithAuthorization(
            payer, address(this), amount, validAfter, validBefore, nonce, signature
        );
        _transfer(token, x402BatchSettlement, amount);
    }

    /// @dev Accepts tokens that return nothing from `transfer` as well as those returning true.
    function _transfer(address token, address to, uint256 amount) private {
        (bool ok, bytes memory ret) =
            token.call(abi.encodeCall(IReceiveWithAuthorization.transfer, (to, amount)));
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool)))) revert TransferFailed();
    }
}
