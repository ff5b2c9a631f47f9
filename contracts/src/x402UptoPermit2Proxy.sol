// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ISignatureTransfer} from "./ISignatureTransfer.sol";
import {x402Permit2ProxyBase} from "./x402Permit2ProxyBase.sol";

/// @title x402UptoPermit2Proxy
/// @notice The spender of every x402 `upto` payment (canonical address
/// `0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002`): the payer signs a maximum, and the
/// facilitator named in the witness `Witness(address to,address facilitator,uint256 validAfter)`
/// settles the amount actually used, at most that maximum, to the signed payee.
/// @dev Only the named facilitator may settle: with any submitter allowed, whoever saw the
/// payment first could settle it for 1 unit and burn the nonce, denying the seller its charge.
contract x402UptoPermit2Proxy is x402Permit2ProxyBase {
    string public constant WITNESS_TYPE_STRING =
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)";
    bytes32 public constant WITNESS_TYPEHASH = keccak256("Witness(address to,address facilitator,uint256 validAfter)");

    struct Witness {
        address to;
        address facilitator;
        uint256 validAfter;
    }

    /// @notice `amount` is above the signed maximum.
    error AmountExceedsPermitted();
    /// @notice The caller is not the facilitator the payer named.
    error UnauthorizedFacilitator();

    /// @notice Settles `amount` (0 < amount ≤ permitted) of a payment whose payer has approved
    /// Permit2.
    function settle(
        ISignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _settleUpto(permit, amount, owner, witness, signature);
        emit Settled();
    }

    /// @notice Settles `amount` after submitting the payer's EIP-2612 permit approving Permit2
    /// (the `eip2612GasSponsoring` extension); `permit2612.value` must be the permitted maximum.
    function settleWithPermit(
        EIP2612Permit calldata permit2612,
        ISignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _executePermit(permit.permitted.token, owner, permit2612, permit.permitted.amount);
        _settleUpto(permit, amount, owner, witness, signature);
        emit SettledWithPermit();
    }

    function _settleUpto(
        ISignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) private {
        if (msg.sender != witness.facilitator) revert UnauthorizedFacilitator();
        if (amount > permit.permitted.amount) revert AmountExceedsPermitted();
        bytes32 witnessHash =
            keccak256(abi.encode(WITNESS_TYPEHASH, witness.to, witness.facilitator, witness.validAfter));
        _settle(permit, amount, owner, witness.to, witness.validAfter, witnessHash, WITNESS_TYPE_STRING, signature);
    }
}
