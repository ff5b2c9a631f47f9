// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IDepositCollector
/// @notice How `x402BatchSettlement.deposit` pulls a payer's tokens: it names a collector and
/// passes it opaque `collectorData` (signatures, nonces); the collector moves exactly `amount`
/// of `token` from `payer` to the calling settlement contract. The settlement contract checks its
/// own balance before and after, so a collector cannot credit a channel with tokens it did not
/// deliver.
interface IDepositCollector {
    /// @param payer The owner of the tokens (the channel's payer).
    /// @param token The ERC-20 being deposited.
    /// @param amount Exactly how much to deliver to `msg.sender`.
    /// @param channelId The channel credited, bound into the payer's authorization so a
    /// signature for one channel cannot fund another.
    /// @param collectorData The collector's own encoding of the payer's authorization.
    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata collectorData)
        external;
}

/// @title BatchDepositCollector
/// @notice What the canonical collectors share: only the canonical `x402BatchSettlement` may ask
/// them to collect. Without that, anyone holding a payer's deposit authorization (it travels in
/// an HTTP header) could have the collector pull the payer's tokens somewhere else first.
/// @dev The settlement address is a constant, not an immutable, so the runtime code alone can be
/// copied to the canonical address and works there unchanged.
abstract contract BatchDepositCollector is IDepositCollector {
    /// @notice The canonical `x402BatchSettlement`, the only caller and the only recipient.
    address public constant x402BatchSettlement = 0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003;

    /// @notice `collect` was called by anything but `x402BatchSettlement`.
    error OnlyX402BatchSettlement();
    /// @notice Never raised here (the settlement address is a constant); kept for the ABI.
    error InvalidX402BatchSettlementAddress();

    modifier onlyx402BatchSettlement() {
        if (msg.sender != x402BatchSettlement) revert OnlyX402BatchSettlement();
        _;
    }
}
