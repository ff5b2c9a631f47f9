// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ISignatureTransfer} from "./ISignatureTransfer.sol";
import {BatchDepositCollector} from "./IDepositCollector.sol";
import {IERC20Permit} from "./x402Permit2ProxyBase.sol";

/// @title Permit2DepositCollector
/// @notice Canonical address `0x4020425FAf3B746C082C2f942b4E5159887B0005`. Deposits any ERC-20
/// (USDT) into a batch-settlement channel through a Permit2 witness transfer: the payer signs
/// `PermitWitnessTransferFrom` with this collector as `spender` and the witness
/// `DepositWitness(bytes32 channelId)`, and Permit2 moves the tokens straight to
/// `x402BatchSettlement`.
/// @dev `collectorData` is `abi.encode(uint256 nonce, uint256 deadline, bytes permit2Signature,
/// bytes eip2612PermitData)`. A non-empty `eip2612PermitData` is
/// `abi.encode(uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)`: the payer's
/// EIP-2612 approval of Permit2, submitted first (gas sponsoring for tokens that have
/// `permit`). A failing permit is logged and skipped (someone may have front-run it with the same
/// signature, which leaves the approval in place); the Permit2 transfer then decides.
contract Permit2DepositCollector is BatchDepositCollector {
    /// @notice The canonical Permit2.
    ISignatureTransfer public constant PERMIT2 = ISignatureTransfer(0x000000000022D473030F116dDEE9F6B43aC78BA3);

    /// @notice The witness part of Permit2's type string: the witness member, then the referenced
    /// types in alphabetical order, as EIP-712's `encodeType` orders them.
    string public constant DEPOSIT_WITNESS_TYPE_STRING =
        "DepositWitness witness)DepositWitness(bytes32 channelId)TokenPermissions(address token,uint256 amount)";
    bytes32 public constant DEPOSIT_WITNESS_TYPEHASH = keccak256("DepositWitness(bytes32 channelId)");

    /// @notice Never raised here (Permit2's address is a constant); kept for the ABI.
    error InvalidPermit2Address();
    /// @notice The EIP-2612 permit's value is not the deposit amount.
    error Permit2612AmountMismatch();

    event EIP2612PermitFailedWithReason(address indexed token, address indexed owner, string reason);
    event EIP2612PermitFailedWithPanic(address indexed token, address indexed owner, uint256 errorCode);
    event EIP2612PermitFailedWithData(address indexed token, address indexed owner, bytes data);

    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata collectorData)
        external
        override
        onlyx402BatchSettlement
    {
        (uint256 nonce, uint256 deadline, bytes memory signature, bytes memory permit2612) =
            abi.decode(collectorData, (uint256, uint256, bytes, bytes));
        if (permit2612.length > 0) _tryPermit(payer, token, amount, permit2612);
        PERMIT2.permitWitnessTransferFrom(
            ISignatureTransfer.PermitTransferFrom({
                permitted: ISignatureTransfer.TokenPermissions({token: token, amount: amount}),
                nonce: nonce,
                deadline: deadline
            }),
            ISignatureTransfer.SignatureTransferDetails({to: x402BatchSettlement, requestedAmount: amount}),
            payer,
            keccak256(abi.encode(DEPOSIT_WITNESS_TYPEHASH, channelId)),
            DEPOSIT_WITNESS_TYPE_STRING,
            signature
        );
    }

    function _tryPermit(address payer, address token, uint256 amount, bytes memory data) private {
        (uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s) =
            abi.decode(data, (uint256, uint256, uint8, bytes32, bytes32));
        if (value != amount) revert Permit2612AmountMismatch();
        try IERC20Permit(token).permit(payer, address(PERMIT2), value, deadline, v, r, s) {}
        catch Error(string memory reason) {
            emit EIP2612PermitFailedWithReason(token, payer, reason);
        } catch Panic(uint256 code) {
            emit EIP2612PermitFailedWithPanic(token, payer, code);
        } catch (bytes memory raw) {
            emit EIP2612PermitFailedWithData(token, payer, raw);
        }
    }
}
