// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Multicall3
/// @notice Batching contract with the same ABI as the widely deployed Multicall3 for the
/// functions below.
/// @dev Code written for Multicall3 (e.g. a facilitator settling many payments in one
/// transaction with `aggregate3` and `allowFailure`, or reading many balances in one call) runs
/// unchanged on local chains, where the canonical deployment does not exist.
///
/// Calls are made from this contract, so `msg.sender` in each target is the Multicall3 address.
/// That is fine for EIP-3009 `transferWithAuthorization` (anyone may submit) but not for
/// `receiveWithAuthorization` (the payee must be the caller).
contract Multicall3 {
    struct Call {
        address target;
        bytes callData;
    }

    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    /// @notice Runs every call; reverts if any fails. Returns the block number with the results
    /// so that reads can be tied to the state they came from.
    function aggregate(Call[] calldata calls) external payable returns (uint256 blockNumber, bytes[] memory returnData) {
        blockNumber = block.number;
        returnData = new bytes[](calls.length);
        for (uint256 i = 0; i < calls.length; i++) {
            (bool ok, bytes memory ret) = calls[i].target.call(calls[i].callData);
            require(ok, "Multicall3: call failed");
            returnData[i] = ret;
        }
    }

    /// @notice Runs every call; with `requireSuccess` false, failures are reported per call
    /// instead of reverting the batch.
    function tryAggregate(bool requireSuccess, Call[] calldata calls)
        public
        payable
        returns (Result[] memory returnData)
    {
        returnData = new Result[](calls.length);
        for (uint256 i = 0; i < calls.length; i++) {
            (bool ok, bytes memory ret) = calls[i].target.call(calls[i].callData);
            if (requireSuccess) require(ok, "Multicall3: call failed");
            returnData[i] = Result(ok, ret);
        }
    }

    /// @notice One result per call. A failing call marked `allowFailure` is reported and the
    /// batch goes on; any other failure reverts the whole batch. This is what batch settlement
    /// wants: one bad payment must not undo the others.
    function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory returnData) {
        returnData = new Result[](calls.length);
        for (uint256 i = 0; i < calls.length; i++) {
            (bool ok, bytes memory ret) = calls[i].target.call(calls[i].callData);
            require(ok || calls[i].allowFailure, "Multicall3: call failed");
            returnData[i] = Result(ok, ret);
        }
    }

    // The helpers below exist so block context can be read in the same batch as other calls.

    function getBlockNumber() external view returns (uint256) {
        return block.number;
    }

    function getCurrentBlockTimestamp() external view returns (uint256) {
        return block.timestamp;
    }

    function getEthBalance(address account) external view returns (uint256) {
        return account.balance;
    }

    function getChainId() external view returns (uint256) {
        return block.chainid;
    }
}
