// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ISignatureTransfer} from "./ISignatureTransfer.sol";
import {x402Permit2ProxyBase} from "./x402Permit2ProxyBase.sol";

/// @title x402ExactPermit2Proxy
/// @notice The spender of every x402 `exact` Permit2 payment (canonical address
/// `0x402085c248EeA27D92E8b30b2C58ed07f9E20001`): moves exactly the permitted amount to the
/// payee the payer signed in the witness `Witness(address to,uint256 validAfter)`. Anyone may
/// submit; nobody can change the amount or the payee.
contract x402ExactPermit2Proxy is x402Permit2ProxyBase {
    /// @notice The witness part of Permit2's type string: the primary type's last member, then
    /// the referenced types in alphabetical order, as EIP-712 encodes them.
    string public constant WITNESS_TYPE_STRING =
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)";
    bytes32 public constant WITNESS_TYPEHASH = keccak256("Witness(address to,uint256 validAfter)");

    struct Witness {
        address to;
        uint256 validAfter;
    }

    /// @notice Settles a payment whose payer has approved Permit2.
    function settle(
        ISignatureTransfer.PermitTransferFrom calldata permit,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _settleExact(permit, owner, witness, signature);
        emit Settled();
    }

    /// @notice Settles a payment after submitting the payer's EIP-2612 permit approving Permit2
    /// (the `eip2612GasSponsoring` extension); `permit2612.value` must be the permitted amount.
    function settleWithPermit(
        EIP2612Permit calldata permit2612,
        ISignatureTransfer.PermitTransferFrom calldata permit,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _executePermit(permit.permitted.token, owner, permit2612, permit.permitted.amount);
        _settleExact(permit, owner, witness, signature);
        emit SettledWithPermit();
    }

    function _settleExact(
        ISignatureTransfer.PermitTransferFrom calldata permit,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) private {
        bytes32 witnessHash = keccak256(abi.encode(WITNESS_TYPEHASH, witness.to, witness.validAfter));
        _settle(
            permit,
            permit.permitted.amount,
            owner,
            witness.to,
            witness.validAfter,
            witnessHash,
            WITNESS_TYPE_STRING,
            signature
        );
    }
}
